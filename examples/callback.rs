//! A server calling a service that the client it accepted implements: the
//! client asks the server to deploy, and the server, midway, asks the
//! client to confirm, on the same session. Run it with:
//!
//! ```text
//! cargo run --example callback
//! ```

use drpc::{CallCtx, Endpoint, Router, Status};

/// Served by the server.
#[drpc::service]
trait Deployer {
    /// Deploys `version`, asking the caller to confirm first.
    async fn deploy(&self, ctx: &CallCtx, version: String) -> Result<String, Status>;
}

/// Served by the client, called by the server.
#[drpc::service]
trait Operator {
    async fn confirm(&self, question: String) -> Result<bool, Status>;
}

struct Server;

impl Deployer for Server {
    async fn deploy(&self, ctx: &CallCtx, version: String) -> Result<String, Status> {
        // The session the call came on reaches the caller's own services.
        let operator = OperatorClient::new(ctx.session().clone());
        let question = format!("deploy {version} to production?");
        if operator.confirm(question).await? {
            Ok(format!("{version} deployed"))
        } else {
            Err(Status::new(drpc::Code(1001), "the operator said no"))
        }
    }
}

/// Confirms anything but versions ending in "-rc".
struct Client;

impl Operator for Client {
    async fn confirm(&self, question: String) -> Result<bool, Status> {
        let yes = !question.contains("-rc ");
        println!("[client] server asks: {question} -> {yes}");
        Ok(yes)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut server_routes = Router::new();
    server_routes.serve(DeployerServer::new(Server))?;
    let server = Endpoint::builder().router(server_routes).build()?;
    let addr = server.listen("tcp://127.0.0.1:0").await?;

    let mut client_routes = Router::new();
    client_routes.serve(OperatorServer::new(Client))?;
    let client = Endpoint::builder().router(client_routes).build()?;
    let deployer = DeployerClient::new(client.dial(&addr).await?);

    println!("[client] {}", deployer.deploy("v1.4.2".into()).await?);
    let refused = deployer.deploy("v1.5.0-rc".into()).await.unwrap_err();
    println!("[client] v1.5.0-rc: {refused}");

    client.close().await;
    server.close().await;
    Ok(())
}
