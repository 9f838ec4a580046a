//! Modules known to the engine: the latest version of every module name (for routing
//! and virtual-actor creation) and compiled components by digest.
//!
//! A digest is compiled at most once per process; the compiled artefact is also cached
//! on disk (`<data>/compiled/<digest>-<engine fingerprint>.cwasm`), so a restart
//! deserialises instead of recompiling, and a changed wasmtime or configuration compiles
//! once into a new file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::OnceCell;

use crate::domain::TenantId;
use crate::executor::{CompiledModule, Executor};
use crate::store::{self, ModuleVersion, Store};

type Cell = Arc<OnceCell<Arc<CompiledModule>>>;

pub struct Registry {
    latest: RwLock<HashMap<String, ModuleVersion>>,
    compiled: Mutex<HashMap<String, Cell>>,
    cache_dir: PathBuf,
}

fn module_key(tenant: &TenantId, name: &str) -> String {
    format!("{}/{}", tenant.0, name)
}

impl Registry {
    pub fn new(cache_dir: PathBuf) -> Self {
        Registry {
            latest: RwLock::new(HashMap::new()),
            compiled: Mutex::new(HashMap::new()),
            cache_dir,
        }
    }

    /// Learn every module's latest version from the store.
    pub fn load(&self, store: &Store) -> Result<(), store::Error> {
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        for (key, rec) in store.all_modules()? {
            if let Some(v) = rec.latest() {
                latest.insert(key, v.clone());
            }
        }
        Ok(())
    }

    /// Make the latest versions those of the store (a module deleted there is gone).
    pub fn replace(&self, store: &Store) -> Result<(), store::Error> {
        let mut next = HashMap::new();
        for (key, rec) in store.all_modules()? {
            if let Some(v) = rec.latest() {
                next.insert(key, v.clone());
            }
        }
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    pub fn latest(&self, tenant: &TenantId, name: &str) -> Option<ModuleVersion> {
        let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
        latest.get(&module_key(tenant, name)).cloned()
    }

    /// Number of module names of a tenant.
    pub fn count(&self, tenant: &TenantId) -> usize {
        let prefix = format!("{}/", tenant.0);
        let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
        latest.keys().filter(|k| k.starts_with(&prefix)).count()
    }

    pub fn forget(&self, tenant: &TenantId, name: &str) {
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        latest.remove(&module_key(tenant, name));
    }

    pub fn forget_tenant(&self, tenant: &TenantId) {
        let prefix = format!("{}/", tenant.0);
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        latest.retain(|k, _| !k.starts_with(&prefix));
    }

    fn cell(&self, digest: &str) -> Cell {
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        compiled.entry(digest.to_owned()).or_default().clone()
    }

    /// Record a freshly deployed version and its compiled form.
    pub fn install(
        &self,
        tenant: &TenantId,
        name: &str,
        version: ModuleVersion,
        module: CompiledModule,
    ) {
        let module = Arc::new(module);
        self.write_cache(&version.digest, &module);
        let _ = self.cell(&version.digest).set(module);
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        latest.insert(module_key(tenant, name), version);
    }

    /// `<digest>-<engine fingerprint>.cwasm`
    fn cache_path(&self, digest: &str, fingerprint: &str) -> PathBuf {
        self.cache_dir.join(format!("{digest}-{fingerprint}.cwasm"))
    }

    fn write_cache(&self, digest: &str, module: &CompiledModule) {
        let path = self.cache_path(digest, &module.fingerprint());
        if path.exists() {
            return;
        }
        let Some(bytes) = module.serialize() else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let written = std::fs::create_dir_all(&self.cache_dir)
            .and_then(|_| std::fs::write(&tmp, &bytes))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not cache a compiled module");
        }
    }

    /// The compiled module of `digest`: from memory, else the disk cache, else compiled
    /// from the stored bytes (off the async workers).
    pub async fn compiled(
        &self,
        digest: &str,
        store: &Store,
        executor: &Executor,
    ) -> Result<Arc<CompiledModule>, String> {
        let cell = self.cell(digest);
        cell.get_or_try_init(|| async {
            let path = self.cache_path(digest, &executor.fingerprint());
            let exec = executor.clone();
            let cached = tokio::task::spawn_blocking(move || {
                std::fs::read(&path)
                    .ok()
                    .and_then(|b| exec.load_compiled(&b))
            })
            .await
            .ok()
            .flatten();
            if let Some(m) = cached {
                return Ok(Arc::new(m));
            }
            tracing::info!(
                digest,
                "compiling a module: no cached artefact fits this engine"
            );
            let bytes = store
                .module_bytes(digest)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("module bytes for {digest} are missing"))?;
            let exec = executor.clone();
            let module = tokio::task::spawn_blocking(move || exec.compile(&bytes))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            self.write_cache(digest, &module);
            Ok(Arc::new(module))
        })
        .await
        .cloned()
    }
}
