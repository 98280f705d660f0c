//! The thread pool of the threaded (`+atomics`) build: rayon's global pool on Web Workers
//! that share the engine's wasm memory, so burn-flex's and gemm's parallel loops use every
//! core. The engine worker builds a [`PoolBuilder`], starts one pool worker per thread
//! (`pkg/src/pool-worker.ts`), each of which instantiates this module on the shared memory
//! and calls [`run_pool_worker`]; then [`PoolBuilder::build`] hands each a rayon thread.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use rayon::{ThreadBuilder, ThreadPoolBuilder};
use wasm_bindgen::prelude::*;

use crate::error::BindingError;

/// What the pool workers take their rayon threads from.
type Threads = Mutex<Receiver<ThreadBuilder>>;

/// A rayon pool being started: the threads are handed out once every worker waits.
#[wasm_bindgen]
pub struct PoolBuilder {
    num_threads: usize,
    sender: Sender<ThreadBuilder>,
    receiver: Box<Threads>,
}

#[wasm_bindgen]
impl PoolBuilder {
    /// A pool of `num_threads` (≥ 1) threads.
    #[wasm_bindgen(constructor)]
    pub fn new(num_threads: usize) -> Result<PoolBuilder, JsValue> {
        if num_threads == 0 {
            return Err(
                BindingError::bad_request("a thread pool needs at least one thread").into(),
            );
        }
        let (sender, receiver) = channel();
        Ok(Self {
            num_threads,
            sender,
            receiver: Box::new(Mutex::new(receiver)),
        })
    }

    /// The compiled module, for the pool workers to instantiate.
    #[wasm_bindgen(getter)]
    pub fn module(&self) -> JsValue {
        wasm_bindgen::module()
    }

    /// The shared memory, for the pool workers to instantiate the module on.
    #[wasm_bindgen(getter)]
    pub fn memory(&self) -> JsValue {
        wasm_bindgen::memory()
    }

    /// The address each pool worker passes to [`run_pool_worker`]. It stays valid while
    /// this builder lives: free it only after [`PoolBuilder::build`].
    pub fn receiver(&self) -> usize {
        &*self.receiver as *const Threads as usize
    }

    /// Builds rayon's global pool; call it once every pool worker runs
    /// [`run_pool_worker`], which then receives its thread.
    pub fn build(&self) -> Result<(), JsValue> {
        let sender = self.sender.clone();
        ThreadPoolBuilder::new()
            .num_threads(self.num_threads)
            .thread_name(|i| format!("nextscale-pool-{i}"))
            .spawn_handler(move |thread| {
                sender
                    .send(thread)
                    .map_err(|_| std::io::Error::other("no pool worker is waiting"))
            })
            .build_global()
            .map_err(|e| {
                BindingError::from(nextscale::Error::Backend(format!(
                    "cannot start the thread pool: {e}"
                )))
                .into()
            })
    }
}

/// Runs in a pool worker: waits for its rayon thread and runs it for the worker's life.
///
/// # Safety
/// `receiver` must come from [`PoolBuilder::receiver`] of a builder that is still alive.
#[wasm_bindgen(js_name = runPoolWorker)]
pub unsafe fn run_pool_worker(receiver: usize) -> Result<(), JsValue> {
    // SAFETY: the caller passes the address of a live builder's boxed receiver.
    let threads = unsafe { &*(receiver as *const Threads) };
    let thread = threads
        .lock()
        .map_err(|_| pool_error("the thread pool's receiver was poisoned"))?
        .recv()
        .map_err(|_| pool_error("the thread pool was dropped before it started"))?;
    thread.run();
    Ok(())
}

/// Threads in rayon's global pool (1 before a pool is built).
#[wasm_bindgen(js_name = poolThreads)]
pub fn pool_threads() -> usize {
    rayon::current_num_threads()
}

fn pool_error(message: &str) -> JsValue {
    BindingError::from(nextscale::Error::Backend(message.into())).into()
}
