//! `dolmen get|set|delete|range`: one request against a node, for people at a terminal.
//! Keys and values are UTF-8 text; output escapes non-printable bytes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use dolmen_client::Client;

/// Where to send the request.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The node's Thrift address.
    #[arg(long, default_value = "127.0.0.1:9090", env = "DOLMEN_ADDR")]
    addr: SocketAddr,
    /// Column family.
    #[arg(long, default_value = "default")]
    cf: String,
}

/// `dolmen get KEY`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    target: Target,
    /// The key.
    key: String,
}

/// `dolmen set KEY VALUE`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    target: Target,
    /// The key.
    key: String,
    /// The value.
    value: String,
}

/// `dolmen delete KEY`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    target: Target,
    /// The key.
    key: String,
}

/// `dolmen range [BEGIN] [END]`.
#[derive(Debug, clap::Args)]
pub struct RangeArgs {
    #[command(flatten)]
    target: Target,
    /// First key (inclusive); default: the start of the keyspace.
    #[arg(default_value = "")]
    begin: String,
    /// End key (exclusive); default: 0xFF.
    end: Option<String>,
    /// Most keys to print (0 = no limit).
    #[arg(long, default_value_t = 100)]
    limit: i32,
}

/// A terminal request.
#[derive(Debug)]
pub enum Request {
    /// `get`.
    Get(GetArgs),
    /// `set`.
    Set(SetArgs),
    /// `delete`.
    Delete(DeleteArgs),
    /// `range`.
    Range(RangeArgs),
}

/// Bytes as text, escaping what is not printable.
fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Runs one request and prints the answer.
pub fn run(request: Request) -> ExitCode {
    let Some(runtime) = crate::small_runtime() else {
        return ExitCode::from(1);
    };
    let client = |t: &Target| Client::new(t.addr, Duration::from_secs(10));
    let result = runtime.block_on(async {
        match &request {
            Request::Get(a) => client(&a.target)
                .get(&a.target.cf, a.key.as_bytes())
                .await
                .map(|v| match v {
                    Some(value) => println!("{}", show(&value)),
                    None => println!("(not found)"),
                }),
            Request::Set(a) => client(&a.target)
                .set(&a.target.cf, a.key.as_bytes(), a.value.as_bytes())
                .await
                .map(|()| println!("OK")),
            Request::Delete(a) => client(&a.target)
                .delete(&a.target.cf, a.key.as_bytes())
                .await
                .map(|()| println!("OK")),
            Request::Range(a) => {
                let end = a
                    .end
                    .as_ref()
                    .map_or_else(|| vec![0xFF], |e| e.as_bytes().to_vec());
                client(&a.target)
                    .range(&a.target.cf, a.begin.as_bytes(), &end, a.limit)
                    .await
                    .map(|(items, more)| {
                        for (k, v) in &items {
                            println!("{}\t{}", show(k), show(v));
                        }
                        if more {
                            println!("… more keys follow (raise --limit)");
                        }
                    })
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dolmen: {e}");
            ExitCode::from(1)
        }
    }
}
