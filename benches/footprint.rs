//! Start-up and idle footprint benchmark (prints figures, asserts nothing).
//!
//! Starts the release `flowcloud` binary the way an operator does (`flowcloud serve`), on a
//! fresh SQLite file, then again on the same file, and likewise on a fresh PostgreSQL database
//! when `BENCH_DATABASE_URL` names a server. For each start it measures:
//! - time until `/readyz` answers 200 (the process runs, migrations are applied, the database
//!   answers), from the moment the process is spawned;
//! - memory once idle: VmRSS after [`IDLE_FOR`] with no requests, split into anonymous memory
//!   (the heap, stacks) and file-backed pages (the mapped binary and libraries);
//! - time from SIGTERM until the process has exited.
//!
//! ```sh
//! cargo bench --bench footprint
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo bench --bench footprint
//! ```
//!
//! Reference (the brief): Prefect 3.9's server takes 7.8 s to start and 230 MB idle on a
//! machine like this one; the aim is 15× better on both (under 0.52 s and 15 MB).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};

/// Starts per database state; the figures are the median and the worst.
const STARTS: usize = 5;
/// How long the server is left alone before its memory is read.
const IDLE_FOR: Duration = Duration::from_secs(3);

struct Sample {
    ready: Duration,
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    stop: Duration,
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("footprint: skipped (run it with `cargo bench --bench footprint`)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite_url = format!("sqlite://{}/footprint.db?mode=rwc", dir.path().display());
    println!("flowcloud start-up and idle footprint (release binary, {STARTS} starts each)");
    measure("SQLite, new file", &sqlite_url, true).await;
    measure("SQLite, existing file", &sqlite_url, false).await;

    let Some(admin_url) = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    else {
        println!("(PostgreSQL skipped: set BENCH_DATABASE_URL=postgres://… to include it)");
        return;
    };
    let name = format!("fc_footprint_{}", std::process::id());
    let admin = Database::connect(&admin_url).await.expect("connect");
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    admin.execute_unprepared(&drop).await.expect("drop");
    let mut url = url::Url::parse(&admin_url).expect("BENCH_DATABASE_URL");
    url.set_path(&format!("/{name}"));
    // Each "new database" start gets an empty one, as a first deployment does.
    let fresh = || async {
        admin.execute_unprepared(&drop).await.expect("drop");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create");
    };
    let mut samples = Vec::new();
    for _ in 0..STARTS {
        fresh().await;
        samples.push(start_once(url.as_str()).await);
    }
    report("PostgreSQL, new database", samples);
    measure("PostgreSQL, existing database", url.as_str(), false).await;
    admin.execute_unprepared(&drop).await.expect("drop");
}

async fn measure(label: &str, url: &str, fresh_sqlite_file: bool) {
    let mut samples = Vec::new();
    for _ in 0..STARTS {
        if fresh_sqlite_file {
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .and_then(|rest| rest.split('?').next())
            {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
        }
        samples.push(start_once(url).await);
    }
    report(label, samples);
}

async fn start_once(url: &str) -> Sample {
    let spawned = Instant::now();
    let support::ServerProcess {
        mut child,
        pid,
        address,
    } = support::start_server(url).await;
    let http = reqwest::Client::new();
    let ready_url = format!("http://{address}/readyz");
    let ready = loop {
        let answered = http.get(&ready_url).send().await;
        if answered.is_ok_and(|r| r.status().is_success()) {
            break spawned.elapsed();
        }
        tokio::task::yield_now().await;
    };
    drop(http);
    tokio::time::sleep(IDLE_FOR).await;
    let [rss_kib, anon_kib, file_kib] =
        support::status_kib(pid, ["VmRSS:", "RssAnon:", "RssFile:"]);
    let stopping = Instant::now();
    // SAFETY: kill(2) on the child's pid, which it still holds (we have not reaped it).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the server did not stop within 30 s of SIGTERM")
        .expect("wait");
    Sample {
        ready,
        rss_kib,
        anon_kib,
        file_kib,
        stop: stopping.elapsed(),
    }
}

fn report(label: &str, mut samples: Vec<Sample>) {
    fn median_and_worst<T: Ord + Copy>(mut values: Vec<T>) -> (T, T) {
        values.sort();
        (values[values.len() / 2], values[values.len() - 1])
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let (ready, ready_worst) = median_and_worst(samples.iter().map(|s| s.ready).collect());
    let (stop, stop_worst) = median_and_worst(samples.iter().map(|s| s.stop).collect());
    samples.sort_by_key(|s| s.rss_kib);
    let median = &samples[samples.len() / 2];
    let worst = &samples[samples.len() - 1];
    println!(
        "{label}: ready in {:.0} ms (worst {:.0}); idle RSS {:.1} MiB (worst {:.1}: anonymous \
         {:.1}, file-backed {:.1}); stopped {:.0} ms after SIGTERM (worst {:.0})",
        ms(ready),
        ms(ready_worst),
        mib(median.rss_kib),
        mib(worst.rss_kib),
        mib(median.anon_kib),
        mib(median.file_kib),
        ms(stop),
        ms(stop_worst),
    );
}
