//! The REST API's own executor: plugin requests run on a dedicated multi-thread Tokio runtime
//! (`api.threads` threads), never on the proxy's threads, so heavy API work (patches, logins,
//! lambdas, signing) cannot hold up proxied traffic. The proxy's task reads the body, hands the
//! request over, awaits the answer and writes it.
//!
//! Two bounds keep the API from piling up work:
//!
//! - **in flight**: at most `api.maxInFlight` API requests are admitted at once; one more is
//!   answered 503 at once (`Retry-After`), never queued;
//! - **time**: a request not answered within `api.timeLimitSeconds` (counted from admission, so
//!   waiting for a thread counts) is answered 503 (`Retry-After`) and its handler is aborted at
//!   its next await point. A step that is running on a CPU slot
//!   ([`gatehouse_plugin_api::CpuPool`]) finishes first and keeps its slot meanwhile, and an
//!   aborted request keeps its in-flight place until its task has really ended.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_plugin_api::{
    ApiError, Errors, Plugin, PluginContext, PluginRequest, PluginResponse, RouteSpec,
};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;

/// The API's threads and bounds (`api:` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSettings {
    /// Threads of the API runtime, and slots of its CPU pool.
    pub threads: usize,
    /// The longest an API request may take before it is answered 503.
    pub time_limit: Duration,
    /// The most API requests admitted at once.
    pub max_in_flight: usize,
}

impl ApiSettings {
    /// The defaults for a gateway with `proxy_threads` proxy threads: half as many API threads
    /// (at least one), a 10 s time limit, 128 requests in flight.
    pub fn defaults(proxy_threads: usize) -> Self {
        ApiSettings {
            threads: (proxy_threads / 2).max(1),
            time_limit: Duration::from_secs(DEFAULT_TIME_LIMIT_SECONDS),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// `api.timeLimitSeconds` when not configured.
pub const DEFAULT_TIME_LIMIT_SECONDS: u64 = 10;
/// `api.maxInFlight` when not configured.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;
/// The `Retry-After` (seconds) of the API's 503 answers.
pub const RETRY_AFTER_SECONDS: u64 = 2;

/// Runs plugin requests on the API runtime, within the bounds (see the module documentation).
pub struct ApiExecutor {
    /// Owned here and shut down without blocking when dropped (possibly inside another
    /// runtime, e.g. the `token` command's).
    runtime: Option<Runtime>,
    handle: Handle,
    in_flight: Arc<Semaphore>,
    settings: ApiSettings,
}

impl ApiExecutor {
    /// Starts the API runtime's threads. An error when the runtime cannot be built.
    pub fn start(settings: ApiSettings) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.threads.max(1))
            .thread_name("gatehouse-api")
            .enable_all()
            .build()?;
        Ok(ApiExecutor {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            settings,
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> ApiSettings {
        self.settings
    }

    /// Runs `plugin.handle(spec, request, context)` on the API runtime and waits for it.
    ///
    /// Returns the plugin's answer (`Err` is rendered as Errors JSON by the caller); a 503
    /// with `Retry-After` when `api.maxInFlight` requests are already admitted or the handler
    /// ran past the time limit (it is then aborted); a 500 when the handler panicked. A
    /// request whose parameters hold a control character is refused before any handler runs
    /// ([`PluginRequest::check_parameters`]: a 400 naming the parameter).
    pub async fn run(
        &self,
        plugin: Arc<dyn Plugin>,
        spec: RouteSpec,
        request: PluginRequest,
        context: PluginContext,
    ) -> Result<PluginResponse, ApiError> {
        request.check_parameters()?;
        let route = spec.name;
        self.run_task(route, async move {
            plugin.handle(&spec, request, &context).await
        })
        .await
    }

    /// Runs `work` (the handling of one API request on `route`) on the API runtime within the
    /// bounds, and waits for it. Returns as [`Self::run`].
    pub async fn run_task<F>(
        &self,
        route: &'static str,
        work: F,
    ) -> Result<PluginResponse, ApiError>
    where
        F: Future<Output = Result<PluginResponse, ApiError>> + Send + 'static,
    {
        let Ok(admitted) = self.in_flight.clone().try_acquire_owned() else {
            tracing::debug!(route, "API request refused: too many in flight");
            return Ok(overloaded(
                "[TooManyRequests]",
                "Too many API requests are in progress; try again shortly.",
            ));
        };
        let mut task = self.handle.spawn(async move {
            // Released when the handler has really ended, aborted or not.
            let _admitted = admitted;
            work.await
        });
        // Timed on the caller's runtime: the API's own threads may all be busy.
        match tokio::time::timeout(self.settings.time_limit, &mut task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(failure)) => Err(ApiError::internal(format!(
                "the API handler of {route} failed: {failure}"
            ))),
            Err(_) => {
                task.abort();
                let limit = self.settings.time_limit.as_secs_f64();
                tracing::warn!(
                    route,
                    limit_seconds = limit,
                    "API request over its time limit: answered 503, handler aborted"
                );
                Ok(overloaded(
                    "[Timeout]",
                    &format!("The request took longer than the API's time limit of {limit} s; try again shortly."),
                ))
            }
        }
    }
}

impl Drop for ApiExecutor {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A 503 with FusionAuth's Errors JSON (`code`, `message`) and `Retry-After`.
fn overloaded(code: &str, message: &str) -> PluginResponse {
    let mut errors = Errors::new();
    errors.general(code, message);
    PluginResponse::json(503, &errors).with_header("Retry-After", RETRY_AFTER_SECONDS.to_string())
}

#[cfg(test)]
mod tests;
