//! `caretaker metrics`: the Prometheus metrics once on stdout, or served on `--serve ADDR`
//! (what the daemon mounts on its own listener; standalone for scraping without a daemon).

use crate::cli::{Global, MetricsArgs};
use crate::context::open_app;
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_observe::MetricsSource;
use std::sync::Arc;

pub fn run(global: &Global, args: &MetricsArgs) -> Result<Code> {
    let app = open_app(global)?;
    let source = Arc::new(MetricsSource::new(app.config, app.store));
    let Some(addr) = &args.serve else {
        print!("{}", source.render());
        return Ok(Code::Ok);
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::new(Code::Unavailable, format!("cannot listen on {addr}: {e}"))
                .hint("choose a free host:port, e.g. --serve 127.0.0.1:9720")
        })?;
        eprintln!("serving metrics on http://{}/metrics (Ctrl-C stops)", listener.local_addr()?);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        caretaker_observe::http::serve(listener, source, shutdown).await?;
        Ok::<_, anyhow::Error>(Code::Ok)
    })
}
