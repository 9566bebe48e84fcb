//! The code a checked service trait becomes: the trait with `Send` futures,
//! a server that registers its routes, and a typed client.

use crate::model::{Ctx, Kind, MethodDef, ServiceDef};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::ReturnType;

pub fn expand(def: &ServiceDef) -> TokenStream {
    let trait_def = trait_def(def);
    let server = server(def);
    let client = client(def);
    let checks = value_checks(def);
    quote! {
        #checks
        #trait_def
        #server
        #client
    }
}

/// The trait, its methods returning `Send` futures (so the router can run
/// them on any task); an `impl` still writes `async fn`.
fn trait_def(def: &ServiceDef) -> TokenStream {
    let ServiceDef {
        attrs, vis, ident, ..
    } = def;
    let supertraits = &def.supertraits;
    let methods = def.methods.iter().map(|m| {
        let attrs = &m.attrs;
        let name = &m.sig.ident;
        let inputs = &m.sig.inputs;
        let output = match &m.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        };
        let route = format!(" Route: `{}`.", m.route);
        let what = match m.kind {
            Kind::Call { .. } => " A call.",
            Kind::Push => " A push: one-way, nothing is sent back.",
            Kind::ServerStream { .. } => " A server stream: the handler sends items.",
            Kind::ClientStream { .. } => {
                " A client stream: the caller sends items, the handler answers once."
            }
            Kind::BidiStream { .. } => " A bidirectional stream: items go both ways.",
        };
        quote! {
            #(#attrs)*
            #[doc = ""]
            #[doc = #route]
            #[doc = #what]
            fn #name(#inputs)
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: ::core::marker::Send + ::core::marker::Sync + 'static #(+ #supertraits)* {
            #(#methods)*
        }
    }
}

fn server(def: &ServiceDef) -> TokenStream {
    let ServiceDef { vis, ident, .. } = def;
    let server = &def.server;
    let doc = format!(
        "Serves a [`{ident}`] on a [`Router`](::drpc::Router): \
         `router.serve({server}::new(value))`, on either peer."
    );
    let routes = def.methods.iter().map(|m| register(ident, m));
    quote! {
        #[doc = #doc]
        // Both peers compile a service; each uses only its server or its client.
        #[allow(dead_code)]
        #vis struct #server<DrpcService> {
            service: ::std::sync::Arc<DrpcService>,
        }

        #[allow(dead_code)]
        impl<DrpcService: #ident> #server<DrpcService> {
            /// Serves `service`.
            pub fn new(service: DrpcService) -> Self {
                Self::from_arc(::std::sync::Arc::new(service))
            }

            /// Serves a service the caller also keeps.
            pub fn from_arc(service: ::std::sync::Arc<DrpcService>) -> Self {
                Self { service }
            }
        }

        impl<DrpcService> ::core::clone::Clone for #server<DrpcService> {
            fn clone(&self) -> Self {
                Self { service: ::std::sync::Arc::clone(&self.service) }
            }
        }

        impl<DrpcService: #ident> ::drpc::service::Service for #server<DrpcService> {
            fn register(
                self,
                routes: &mut ::drpc::Group<'_>,
            ) -> ::core::result::Result<(), ::drpc::RouteError> {
                #(#routes)*
                ::core::result::Result::Ok(())
            }
        }
    }
}

/// The arguments as the message carries them: none is `()`, one is the
/// value itself, several are a map keyed by their names.
fn wire_args(m: &MethodDef, owned: bool) -> (TokenStream, TokenStream) {
    let serde = quote!(::drpc::__private::serde);
    match m.args.as_slice() {
        [] => (quote!(), quote!(())),
        [(_, ty)] if owned => (quote!(), quote!(#ty)),
        [(name, _)] => (quote!(), quote!(#name)),
        many => {
            let names: Vec<_> = many.iter().map(|(n, _)| n).collect();
            let tys: Vec<_> = many.iter().map(|(_, t)| t).collect();
            if owned {
                let def = quote! {
                    #[derive(#serde::Deserialize)]
                    #[serde(crate = "::drpc::__private::serde")]
                    struct DrpcArgs { #(#names: #tys,)* }
                };
                (def, quote!(DrpcArgs))
            } else {
                let def = quote! {
                    #[derive(#serde::Serialize)]
                    #[serde(crate = "::drpc::__private::serde")]
                    struct DrpcArgs<'drpc> { #(#names: &'drpc #tys,)* }
                };
                (def, quote!(DrpcArgs { #(#names: &#names,)* }))
            }
        }
    }
}

/// Registers one method's route on `routes`, with `self.service`.
fn register(service: &syn::Ident, m: &MethodDef) -> TokenStream {
    let name = &m.sig.ident;
    let route = &m.route;
    let (def, args_ty) = wire_args(m, true);
    // The handler's own names all start with `__drpc` and the arguments
    // are passed as fields, so no argument name can shadow them.
    let mut call_args: Vec<TokenStream> = match m.ctx {
        Ctx::None => Vec::new(),
        Ctx::ByRef => vec![quote!(&__drpc_ctx)],
        Ctx::ByValue => vec![quote!(__drpc_ctx)],
    };
    match m.args.as_slice() {
        [] => {}
        [_] => call_args.push(quote!(__drpc_args)),
        many => call_args.extend(many.iter().map(|(n, _)| quote!(__drpc_args.#n))),
    }
    // The streams come last, as the method takes them.
    let mut stream_params = Vec::new();
    let (register, ctx_ty) = match &m.kind {
        Kind::Call { .. } => (quote!(call), quote!(::drpc::CallCtx)),
        Kind::Push => (quote!(push), quote!(::drpc::PushCtx)),
        Kind::ServerStream { item } => {
            stream_params.push(quote!(__drpc_out: ::drpc::ItemSink<#item>));
            call_args.push(quote!(__drpc_out));
            (quote!(server_stream), quote!(::drpc::CallCtx))
        }
        Kind::ClientStream { item, .. } => {
            stream_params.push(quote!(__drpc_items: ::drpc::Items<#item>));
            call_args.push(quote!(__drpc_items));
            (quote!(client_stream), quote!(::drpc::CallCtx))
        }
        Kind::BidiStream { input, output } => {
            stream_params.push(quote!(__drpc_items: ::drpc::Items<#input>));
            stream_params.push(quote!(__drpc_out: ::drpc::ItemSink<#output>));
            call_args.push(quote!(__drpc_items));
            call_args.push(quote!(__drpc_out));
            (quote!(bidi_stream), quote!(::drpc::CallCtx))
        }
    };
    // A type that is not serde is reported at the method, not the attribute.
    let register = quote_spanned!(name.span()=> routes.#register);
    let cfgs = m.attrs.iter().filter(|a| a.path().is_ident("cfg"));
    quote! {
        #(#cfgs)*
        {
            #def
            let __drpc_service = ::std::sync::Arc::clone(&self.service);
            #register(#route, move |__drpc_ctx: #ctx_ty, __drpc_args: #args_ty #(, #stream_params)*| {
                let __drpc_service = ::std::sync::Arc::clone(&__drpc_service);
                // Called through the trait: a method named `clone` must not
                // find `Arc::clone` first.
                async move {
                    <DrpcService as #service>::#name(&*__drpc_service, #(#call_args),*).await
                }
            })?;
        }
    }
}

fn client(def: &ServiceDef) -> TokenStream {
    let ServiceDef { vis, ident, .. } = def;
    let client = &def.client;
    let doc = format!(
        "A typed client of [`{ident}`] over a [`Session`](::drpc::Session) (or any \
         [`Caller`](::drpc::service::Caller)); cheap to clone. Its `with_*` methods \
         return a copy with other options for the calls made through it."
    );
    let methods = def.methods.iter().map(|m| {
        let attrs = m
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc") || a.path().is_ident("cfg"));
        let name = &m.sig.ident;
        let route = &m.route;
        let params = m.args.iter().map(|(n, t)| quote!(#n: #t));
        let (def, value) = wire_args(m, false);
        let status = quote!(::drpc::Status);
        match &m.kind {
            Kind::Call { ok } => {
                let call = quote_spanned!(name.span()=> self.inner.call::<_, #ok>);
                quote! {
                    #(#attrs)*
                    pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#ok, #status> {
                        #def
                        #call(#route, &#value).await.map(|reply| reply.value)
                    }
                }
            }
            Kind::ServerStream { item } => {
                let open = quote_spanned!(name.span()=> self.inner.server_stream::<_, #item>);
                quote! {
                    #(#attrs)*
                    #[doc = ""]
                    #[doc = "Returns the handler's items; dropping them cancels the call."]
                    pub async fn #name(&self, #(#params),*)
                        -> ::core::result::Result<::drpc::Items<#item>, #status> {
                        #def
                        #open(#route, &#value).await
                    }
                }
            }
            Kind::ClientStream { item, ok } => {
                let open = quote_spanned!(name.span()=> self.inner.client_stream::<_, #item, #ok>);
                quote! {
                    #(#attrs)*
                    #[doc = ""]
                    #[doc = "Returns the sink for this side's items (end it with `end()`) and the"]
                    #[doc = "handler's answer, which dropping cancels the call."]
                    pub async fn #name(&self, #(#params),*) -> ::core::result::Result<
                        (::drpc::ItemSink<#item>, ::drpc::StreamReply<#ok>),
                        #status,
                    > {
                        #def
                        #open(#route, &#value).await
                    }
                }
            }
            Kind::BidiStream { input, output } => {
                let open =
                    quote_spanned!(name.span()=> self.inner.bidi_stream::<_, #input, #output>);
                quote! {
                    #(#attrs)*
                    #[doc = ""]
                    #[doc = "Returns the sink for this side's items (end it with `end()`) and the"]
                    #[doc = "handler's items, which dropping cancels the call."]
                    pub async fn #name(&self, #(#params),*) -> ::core::result::Result<
                        (::drpc::ItemSink<#input>, ::drpc::Items<#output>),
                        #status,
                    > {
                        #def
                        #open(#route, &#value).await
                    }
                }
            }
            Kind::Push => {
                let push = quote_spanned!(name.span()=> self.inner.push);
                quote! {
                    #(#attrs)*
                    #[doc = ""]
                    #[doc = "Returns once the push is queued for writing."]
                    pub async fn #name(&self, #(#params),*) -> ::core::result::Result<(), #status> {
                        #def
                        #push(#route, &#value).await
                    }
                }
            }
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #[allow(dead_code)]
        #vis struct #client<DrpcCaller = ::drpc::Session> {
            inner: ::drpc::service::ServiceClient<DrpcCaller>,
        }

        #[allow(dead_code)]
        impl<DrpcCaller: ::drpc::service::Caller> #client<DrpcCaller> {
            /// A client calling through `caller`, usually a [`Session`](::drpc::Session).
            pub fn new(caller: DrpcCaller) -> Self {
                Self { inner: ::drpc::service::ServiceClient::new(caller) }
            }

            /// What this client calls through.
            pub fn caller(&self) -> &DrpcCaller {
                self.inner.caller()
            }

            /// A copy whose calls wait at most `timeout` for their reply, and
            /// whose pushes at most `timeout` to be queued.
            pub fn with_timeout(&self, timeout: ::std::time::Duration) -> Self {
                Self { inner: self.inner.with_timeout(timeout) }
            }

            /// A copy whose calls and pushes carry the meta pair `key`, `value`.
            pub fn with_meta(&self, key: &str, value: &str) -> Self {
                Self { inner: self.inner.with_meta(key, value) }
            }

            /// A copy whose calls and pushes encode their bodies with `codec`.
            pub fn with_codec(&self, codec: ::drpc::CodecId) -> Self {
                Self { inner: self.inner.with_codec(codec) }
            }

            /// A copy whose calls use `opts` whole (pushes keep their options).
            pub fn with_call_options(&self, opts: ::drpc::CallOptions) -> Self {
                Self { inner: self.inner.with_call_options(opts) }
            }

            #(#methods)*
        }
    }
}

/// Each argument and result checked against `drpc::service::Value`, where
/// the method names it, so a type that is not serde is reported there.
fn value_checks(def: &ServiceDef) -> TokenStream {
    let checks = def.methods.iter().flat_map(|m| {
        let ok = match &m.kind {
            Kind::Call { ok } | Kind::ClientStream { ok, .. } => Some(&**ok),
            _ => None,
        };
        let cfgs: Vec<_> = m
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .collect();
        m.args
            .iter()
            .map(|(_, t)| t)
            .chain(ok)
            .chain(m.kind.stream_types())
            .map(move |ty| quote_spanned!(ty.span()=> #(#cfgs)* is_value::<#ty>();))
    });
    quote! {
        const _: () = {
            fn is_value<T: ::drpc::service::Value>() {}
            #[allow(dead_code)]
            fn check() {
                #(#checks)*
            }
        };
    }
}
