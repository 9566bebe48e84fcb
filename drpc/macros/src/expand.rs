//! The code a checked service trait becomes: the trait with `Send` futures,
//! a server that registers its routes, and a typed client.

use crate::model::{Ctx, Kind, MethodDef, ServiceDef};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::ReturnType;

pub fn expand(def: &ServiceDef) -> TokenStream {
    let trait_def = trait_def(def);
    let server = server(def);
    let client = client(def);
    let checks = value_checks(def);
    // The checks first: rustc reports them before the errors the same type
    // causes in the server and the client.
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
    let server = format_ident!("{}Server", ident);
    let doc = format!(
        "Serves a [`{ident}`] on a [`Router`](::drpc::Router): \
         `router.serve({server}::new(value))`, on either peer."
    );
    let routes = def.methods.iter().map(register);
    quote! {
        #[doc = #doc]
        // Both peers compile a service; each uses only its server or its client.
        #[allow(dead_code)]
        #vis struct #server<S> {
            service: ::std::sync::Arc<S>,
        }

        #[allow(dead_code)]
        impl<S: #ident> #server<S> {
            /// Serves `service`.
            pub fn new(service: S) -> Self {
                Self::from_arc(::std::sync::Arc::new(service))
            }

            /// Serves a service the caller also keeps.
            pub fn from_arc(service: ::std::sync::Arc<S>) -> Self {
                Self { service }
            }
        }

        impl<S> ::core::clone::Clone for #server<S> {
            fn clone(&self) -> Self {
                Self { service: ::std::sync::Arc::clone(&self.service) }
            }
        }

        impl<S: #ident> ::drpc::service::Service for #server<S> {
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
                    struct Args { #(#names: #tys,)* }
                };
                (def, quote!(Args))
            } else {
                let def = quote! {
                    #[derive(#serde::Serialize)]
                    #[serde(crate = "::drpc::__private::serde")]
                    struct Args<'a> { #(#names: &'a #tys,)* }
                };
                (def, quote!(Args { #(#names: &#names,)* }))
            }
        }
    }
}

/// Registers one method's route on `routes`, with `self.service`.
fn register(m: &MethodDef) -> TokenStream {
    let name = &m.sig.ident;
    let route = &m.route;
    let (def, args_ty) = wire_args(m, true);
    let arg_names: Vec<_> = m.args.iter().map(|(n, _)| n).collect();
    let take = match m.args.len() {
        0 => quote!(let () = args;),
        1 => {
            let n = arg_names[0];
            quote!(let #n = args;)
        }
        _ => quote!(let Args { #(#arg_names,)* } = args;),
    };
    let ctx_arg = match m.ctx {
        Ctx::None => quote!(),
        Ctx::ByRef => quote!(&ctx,),
        Ctx::ByValue => quote!(ctx,),
    };
    let (register, ctx_ty) = match m.kind {
        Kind::Call { .. } => (quote!(call), quote!(::drpc::CallCtx)),
        Kind::Push => (quote!(push), quote!(::drpc::PushCtx)),
    };
    // A type that is not serde is reported at the method, not the attribute.
    let register = quote_spanned!(name.span()=> routes.#register);
    let unused = (m.ctx == Ctx::None).then(|| quote!(let _ = &ctx;));
    quote! {
        {
            #def
            let service = ::std::sync::Arc::clone(&self.service);
            #register(#route, move |ctx: #ctx_ty, args: #args_ty| {
                let service = ::std::sync::Arc::clone(&service);
                async move {
                    #unused
                    #take
                    service.#name(#ctx_arg #(#arg_names),*).await
                }
            })?;
        }
    }
}

fn client(def: &ServiceDef) -> TokenStream {
    let ServiceDef { vis, ident, .. } = def;
    let client = format_ident!("{}Client", ident);
    let doc = format!(
        "A typed client of [`{ident}`] over a [`Session`](::drpc::Session) (or any \
         [`Caller`](::drpc::service::Caller)); cheap to clone. Its `with_*` methods \
         return a copy with other options for the calls made through it."
    );
    let methods = def.methods.iter().map(|m| {
        let attrs = m.attrs.iter().filter(|a| a.path().is_ident("doc"));
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
        #vis struct #client<C = ::drpc::Session> {
            inner: ::drpc::service::ServiceClient<C>,
        }

        #[allow(dead_code)]
        impl<C: ::drpc::service::Caller> #client<C> {
            /// A client calling through `caller`, usually a [`Session`](::drpc::Session).
            pub fn new(caller: C) -> Self {
                Self { inner: ::drpc::service::ServiceClient::new(caller) }
            }

            /// What this client calls through.
            pub fn caller(&self) -> &C {
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

            #(#methods)*
        }
    }
}

/// Each argument and result checked against `drpc::service::Value`, where
/// the method names it, so a type that is not serde is reported there.
fn value_checks(def: &ServiceDef) -> TokenStream {
    let types = def.methods.iter().flat_map(|m| {
        let ok = match &m.kind {
            Kind::Call { ok } => Some(&**ok),
            Kind::Push => None,
        };
        m.args.iter().map(|(_, t)| t).chain(ok)
    });
    let checks = types.map(|ty| quote_spanned!(ty.span()=> is_value::<#ty>();));
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
