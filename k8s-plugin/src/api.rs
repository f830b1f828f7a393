//! The Kubernetes KMS v2 gRPC API (`k8s.io/kms/apis/v2/api.proto`, package `v2`): its six
//! messages with their field numbers, the server side (`v2.KeyManagementService` routed to a
//! [`KeyManagement`] implementation) and a client (what kube-apiserver does, for tests and
//! tools). Written from the published definition with prost and tonic; no code generation.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// The only version this plugin speaks.
pub const VERSION: &str = "v2";
pub const SERVICE: &str = "v2.KeyManagementService";
/// Largest request message the server decodes (a DEK and its annotations fit many times).
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    /// The API version, `v2`.
    #[prost(string, tag = "1")]
    pub version: String,
    /// `ok`, or why not.
    #[prost(string, tag = "2")]
    pub healthz: String,
    /// The current write key.
    #[prost(string, tag = "3")]
    pub key_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DecryptRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub ciphertext: Vec<u8>,
    /// The apiserver's identifier for the request (for logs).
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub key_id: String,
    #[prost(map = "string, bytes", tag = "4")]
    pub annotations: HashMap<String, Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DecryptResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub plaintext: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub plaintext: Vec<u8>,
    #[prost(string, tag = "2")]
    pub uid: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub ciphertext: Vec<u8>,
    #[prost(string, tag = "2")]
    pub key_id: String,
    #[prost(map = "string, bytes", tag = "3")]
    pub annotations: HashMap<String, Vec<u8>>,
}

/// What the plugin implements.
pub trait KeyManagement: Send + Sync + 'static {
    fn status(&self) -> impl Future<Output = Result<StatusResponse, Status>> + Send;
    fn encrypt(
        &self,
        request: EncryptRequest,
    ) -> impl Future<Output = Result<EncryptResponse, Status>> + Send;
    fn decrypt(
        &self,
        request: DecryptRequest,
    ) -> impl Future<Output = Result<DecryptResponse, Status>> + Send;
}

/// `v2.KeyManagementService` over a [`KeyManagement`].
pub struct Server<T>(pub Arc<T>);

impl<T> Clone for Server<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> NamedService for Server<T> {
    const NAME: &'static str = SERVICE;
}

/// What answers one method: the plugin and the request, the response to come.
type Handler<T, Req> = fn(Arc<T>, Req) -> BoxFuture<Response<Reply<Req>>, Status>;

/// One method of the service, as tonic's unary machinery wants it.
struct Method<T, Req: Call>(Arc<T>, Handler<T, Req>);

/// The response message of each request message.
pub trait Call: prost::Message + Default + Send + 'static {
    type Reply: prost::Message + Default + Send + 'static;
}
type Reply<R> = <R as Call>::Reply;

impl Call for StatusRequest {
    type Reply = StatusResponse;
}
impl Call for EncryptRequest {
    type Reply = EncryptResponse;
}
impl Call for DecryptRequest {
    type Reply = DecryptResponse;
}

impl<T: Send + Sync + 'static, Req: Call> UnaryService<Req> for Method<T, Req> {
    type Response = Reply<Req>;
    type Future = BoxFuture<Response<Reply<Req>>, Status>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        (self.1)(self.0.clone(), request.into_inner())
    }
}

fn respond<T, Req, F>(
    plugin: Arc<T>,
    handler: Handler<T, Req>,
    request: http::Request<F>,
) -> BoxFuture<http::Response<Body>, Infallible>
where
    T: Send + Sync + 'static,
    Req: Call,
    F: http_body::Body + Send + 'static,
    F::Error: Into<StdError> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = Grpc::new(ProstCodec::<Reply<Req>, Req>::default())
            .max_decoding_message_size(MAX_MESSAGE);
        Ok(grpc.unary(Method(plugin, handler), request).await)
    })
}

impl<T, F> Service<http::Request<F>> for Server<T>
where
    T: KeyManagement,
    F: http_body::Body + Send + 'static,
    F::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<F>) -> Self::Future {
        let plugin = self.0.clone();
        match request.uri().path() {
            "/v2.KeyManagementService/Status" => respond(
                plugin,
                |p: Arc<T>, _: StatusRequest| {
                    Box::pin(async move { p.status().await.map(Response::new) })
                },
                request,
            ),
            "/v2.KeyManagementService/Encrypt" => respond(
                plugin,
                |p: Arc<T>, r: EncryptRequest| {
                    Box::pin(async move { p.encrypt(r).await.map(Response::new) })
                },
                request,
            ),
            "/v2.KeyManagementService/Decrypt" => respond(
                plugin,
                |p: Arc<T>, r: DecryptRequest| {
                    Box::pin(async move { p.decrypt(r).await.map(Response::new) })
                },
                request,
            ),
            other => {
                let status = Status::unimplemented(format!("no method {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// A client of the plugin's Unix socket, as kube-apiserver calls it.
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl Client {
    pub async fn connect(socket: PathBuf) -> Result<Self, tonic::transport::Error> {
        // The URI is a placeholder: every connection goes to the socket.
        let channel = tonic::transport::Endpoint::from_static("http://kms-plugin")
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = socket.clone();
                async move {
                    tokio::net::UnixStream::connect(socket)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await?;
        Ok(Self {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    async fn call<Req: Call>(
        &mut self,
        method: &'static str,
        request: Req,
    ) -> Result<Reply<Req>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("the plugin is not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(method);
        let response = self
            .grpc
            .unary(
                Request::new(request),
                path,
                ProstCodec::<Req, Reply<Req>>::default(),
            )
            .await?;
        Ok(response.into_inner())
    }

    pub async fn status(&mut self) -> Result<StatusResponse, Status> {
        self.call("/v2.KeyManagementService/Status", StatusRequest {})
            .await
    }

    pub async fn encrypt(&mut self, request: EncryptRequest) -> Result<EncryptResponse, Status> {
        self.call("/v2.KeyManagementService/Encrypt", request).await
    }

    pub async fn decrypt(&mut self, request: DecryptRequest) -> Result<DecryptResponse, Status> {
        self.call("/v2.KeyManagementService/Decrypt", request).await
    }
}
