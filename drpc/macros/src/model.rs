//! A service trait read and checked: every mistake the macro can see is
//! reported here, at the tokens that make it, with what to write instead.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments, ReturnType,
    Signature, TraitItem, TraitItemFn, Type, TypeParamBound, Visibility,
};

/// The trait, as the macro generates from it.
pub struct ServiceDef {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    /// The generated server's and client's names.
    pub server: Ident,
    pub client: Ident,
    pub supertraits: Vec<TypeParamBound>,
    pub methods: Vec<MethodDef>,
}

/// What a method is on the wire.
pub enum Kind {
    /// A call answering `Result<ok, _>`.
    Call { ok: Box<Type> },
    /// A one-way push.
    Push,
    /// A server stream: the handler sends `item`s through an `ItemSink`.
    ServerStream { item: Box<Type> },
    /// A client stream: the handler reads the caller's `item`s and answers
    /// once with `ok`.
    ClientStream { item: Box<Type>, ok: Box<Type> },
    /// A bidirectional stream: the handler reads `input`s and sends
    /// `output`s.
    BidiStream { input: Box<Type>, output: Box<Type> },
}

impl Kind {
    /// The types the method's streams carry, for the serde checks.
    pub fn stream_types(&self) -> Vec<&Type> {
        match self {
            Kind::Call { .. } | Kind::Push => Vec::new(),
            Kind::ServerStream { item } | Kind::ClientStream { item, .. } => vec![item],
            Kind::BidiStream { input, output } => vec![input, output],
        }
    }
}

/// The stream parameters a handler may take, last: the caller's items,
/// then a sink for its own.
#[derive(Clone, Copy, PartialEq)]
enum StreamParam {
    Items,
    Sink,
}

/// How the handler wants its context, if at all.
#[derive(Clone, Copy, PartialEq)]
pub enum Ctx {
    None,
    ByRef,
    ByValue,
}

pub struct MethodDef {
    /// The method's own attributes, without `#[drpc(...)]`.
    pub attrs: Vec<Attribute>,
    pub sig: Signature,
    pub kind: Kind,
    pub route: String,
    pub ctx: Ctx,
    /// The arguments the peer sends, in order.
    pub args: Vec<(Ident, Type)>,
}

/// Reads `#[drpc::service(prefix = "...", server = "...", client = "...")]`
/// on `item`.
pub fn parse(attr: TokenStream, item: ItemTrait) -> syn::Result<ServiceDef> {
    let mut prefix = None;
    let mut server = None;
    let mut client = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("prefix") {
            let lit: LitStr = meta.value()?.parse()?;
            check_prefix(&lit)?;
            prefix = Some(lit.value());
            Ok(())
        } else if meta.path.is_ident("server") {
            server = Some(meta.value()?.parse::<LitStr>()?.parse::<Ident>()?);
            Ok(())
        } else if meta.path.is_ident("client") {
            client = Some(meta.value()?.parse::<LitStr>()?.parse::<Ident>()?);
            Ok(())
        } else {
            Err(meta.error(
                "unknown option: `#[drpc::service]` takes `prefix = \"/path\"`, \
                 `server = \"Name\"` and `client = \"Name\"`",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "a drpc service trait cannot be generic: its routes carry concrete types; \
             use concrete argument and result types",
        ));
    }
    if let Some(unsafety) = &item.unsafety {
        return Err(syn::Error::new_spanned(
            unsafety,
            "a drpc service trait cannot be `unsafe`",
        ));
    }
    let prefix = prefix.unwrap_or_else(|| format!("/{}", snake_case(&item.ident.to_string())));
    let mut errors: Option<syn::Error> = None;
    let mut methods: Vec<MethodDef> = Vec::new();
    for it in item.items {
        let result = match it {
            TraitItem::Fn(f) => parse_method(f, &prefix),
            other => Err(syn::Error::new_spanned(
                other,
                "a drpc service trait holds only `async fn` methods",
            )),
        };
        match result {
            Ok(m) => {
                if let Some(first) = methods.iter().find(|o| o.route == m.route) {
                    let e = syn::Error::new_spanned(
                        &m.sig.ident,
                        format!(
                            "two methods on one route: `{}` and `{}` both serve `{}`; \
                             give one of them another with `#[drpc(name = \"...\")]`",
                            first.sig.ident, m.sig.ident, m.route
                        ),
                    );
                    combine(&mut errors, e);
                }
                methods.push(m);
            }
            Err(e) => combine(&mut errors, e),
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let server = server.unwrap_or_else(|| quote::format_ident!("{}Server", item.ident));
    let client = client.unwrap_or_else(|| quote::format_ident!("{}Client", item.ident));
    Ok(ServiceDef {
        attrs: item.attrs,
        vis: item.vis,
        server,
        client,
        ident: item.ident,
        supertraits: item.supertraits.into_iter().collect(),
        methods,
    })
}

/// `item` without the macro's own method attributes, to emit beside an
/// error.
pub fn as_written(mut item: ItemTrait) -> ItemTrait {
    for it in &mut item.items {
        if let TraitItem::Fn(f) = it {
            f.attrs.retain(|a| !a.path().is_ident("drpc"));
        }
    }
    item
}

fn combine(into: &mut Option<syn::Error>, e: syn::Error) {
    match into {
        Some(first) => first.combine(e),
        None => *into = Some(e),
    }
}

fn check_prefix(lit: &LitStr) -> syn::Result<()> {
    let p = lit.value();
    if !p.is_empty() && (!p.starts_with('/') || p.ends_with('/')) {
        return Err(syn::Error::new_spanned(
            lit,
            "a prefix starts with `/` and does not end with one, as `/math`; \
             or is empty, for routes at the root",
        ));
    }
    Ok(())
}

/// What `#[drpc(...)]` on a method says.
struct MethodAttrs {
    push: bool,
    name: Option<String>,
}

fn method_attrs(attrs: &mut Vec<Attribute>) -> syn::Result<MethodAttrs> {
    let mut out = MethodAttrs {
        push: false,
        name: None,
    };
    let mut kept = Vec::new();
    for attr in attrs.drain(..) {
        if !attr.path().is_ident("drpc") {
            kept.push(attr);
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("push") {
                out.push = true;
                Ok(())
            } else if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                let v = lit.value();
                if v.is_empty() || v.starts_with('/') || v.ends_with('/') {
                    return Err(syn::Error::new_spanned(
                        lit,
                        "a method's name is the last part of its route, as `add` or `Add`: \
                         not empty, and no `/` at either end (the trait's prefix comes before it)",
                    ));
                }
                out.name = Some(v);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown option: a method takes `#[drpc(push)]` and `#[drpc(name = \"...\")]`",
                ))
            }
        })?;
    }
    *attrs = kept;
    Ok(out)
}

fn parse_method(mut f: TraitItemFn, prefix: &str) -> syn::Result<MethodDef> {
    let opts = method_attrs(&mut f.attrs)?;
    let sig = &f.sig;
    let name = sig.ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    if let Some(body) = &f.default {
        return Err(syn::Error::new_spanned(
            body,
            format!("`{name}` has a body here: write its body in the `impl` of the trait"),
        ));
    }
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            sig.fn_token,
            format!(
                "`{name}` is not async: every drpc service method is awaited; \
                 write `async fn {name}(&self, ...)`"
            ),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            format!(
                "`{name}` is generic: the peer cannot pick a type; \
                 give its arguments and result concrete types"
            ),
        ));
    }
    if let Some(t) = sig
        .constness
        .as_ref()
        .map(Spanned::span)
        .or(sig.unsafety.as_ref().map(Spanned::span))
    {
        return Err(syn::Error::new(
            t,
            format!("`{name}` must be a plain `async fn`"),
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            v,
            "a service method is not variadic",
        ));
    }
    if RESERVED.contains(&name) {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            format!(
                "`{name}` is taken by the generated client's own methods; \
                 call the method something else and keep the route with `#[drpc(name = \"{name}\")]`"
            ),
        ));
    }
    check_receiver(sig, name)?;
    let mut ctx = Ctx::None;
    let mut args = Vec::new();
    let mut items: Option<Type> = None;
    let mut sink: Option<Type> = None;
    for (i, input) in sig.inputs.iter().skip(1).enumerate() {
        let FnArg::Typed(pt) = input else {
            unreachable!("a receiver comes first")
        };
        if let Some(by_ref) = context_type(&pt.ty, opts.push, name)? {
            if i != 0 {
                return Err(syn::Error::new_spanned(
                    &pt.ty,
                    "the context comes first, right after `&self`",
                ));
            }
            ctx = if by_ref { Ctx::ByRef } else { Ctx::ByValue };
            continue;
        }
        if let Some((param, item)) = stream_param(&pt.ty) {
            if opts.push {
                return Err(syn::Error::new_spanned(
                    &pt.ty,
                    format!("`{name}` is a push: it carries no stream; make it a call"),
                ));
            }
            let slot = match param {
                StreamParam::Items if sink.is_some() => {
                    return Err(syn::Error::new_spanned(
                        &pt.ty,
                        "the caller's `Items` come before the handler's `ItemSink`",
                    ))
                }
                StreamParam::Items => &mut items,
                StreamParam::Sink => &mut sink,
            };
            if slot.is_some() {
                return Err(syn::Error::new_spanned(
                    &pt.ty,
                    "a method takes at most one `Items` and one `ItemSink`",
                ));
            }
            *slot = Some(item);
            continue;
        }
        if items.is_some() || sink.is_some() {
            return Err(syn::Error::new_spanned(
                &pt.ty,
                "the streams come last: `Items<T>` and then `ItemSink<U>`, after every argument",
            ));
        }
        let Pat::Ident(pi) = &*pt.pat else {
            return Err(syn::Error::new_spanned(
                &pt.pat,
                "name each argument with a plain identifier, as `a: i64`: \
                 several arguments travel as a map keyed by their names",
            ));
        };
        match &*pt.ty {
            Type::Reference(r) => {
                return Err(syn::Error::new_spanned(
                    r,
                    "arguments are decoded from the message and owned by the method: \
                     take them by value (`String`, not `&str`)",
                ))
            }
            Type::ImplTrait(t) => {
                return Err(syn::Error::new_spanned(
                    t,
                    "an argument needs a concrete type that serde can decode, not `impl Trait`",
                ))
            }
            _ => {}
        }
        args.push((pi.ident.clone(), (*pt.ty).clone()));
    }
    let kind = if opts.push {
        if let ReturnType::Type(_, ty) = &sig.output {
            if !matches!(&**ty, Type::Tuple(t) if t.elems.is_empty()) {
                return Err(syn::Error::new_spanned(
                    ty,
                    format!(
                        "`{name}` is a push: nothing goes back to the pusher, \
                         so it returns nothing"
                    ),
                ));
            }
        }
        Kind::Push
    } else {
        let ok = result_ok(&sig.output, name)?;
        let unit = matches!(&ok, Type::Tuple(t) if t.elems.is_empty());
        if sink.is_some() && !unit {
            return Err(syn::Error::new_spanned(
                &ok,
                format!(
                    "`{name}` sends its items through its `ItemSink`: it returns \
                     `Result<(), drpc::Status>`, and the reply's meta carries anything else"
                ),
            ));
        }
        match (items, sink) {
            (None, None) => Kind::Call { ok: Box::new(ok) },
            (None, Some(item)) => Kind::ServerStream {
                item: Box::new(item),
            },
            (Some(item), None) => Kind::ClientStream {
                item: Box::new(item),
                ok: Box::new(ok),
            },
            (Some(input), Some(output)) => Kind::BidiStream {
                input: Box::new(input),
                output: Box::new(output),
            },
        }
    };
    let route = format!("{prefix}/{}", opts.name.as_deref().unwrap_or(name));
    Ok(MethodDef {
        attrs: f.attrs,
        sig: f.sig,
        kind,
        route,
        ctx,
        args,
    })
}

/// The generated client's own methods, which a trait method cannot shadow.
const RESERVED: [&str; 7] = [
    "new",
    "caller",
    "clone",
    "with_timeout",
    "with_meta",
    "with_codec",
    "with_call_options",
];

fn check_receiver(sig: &Signature, name: &str) -> syn::Result<()> {
    let hint = format!(
        "`{name}` must take `&self`: one service value serves every call at once \
         (keep mutable state behind a `Mutex` or atomics)"
    );
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {
            if r.colon_token.is_some() {
                return Err(syn::Error::new_spanned(r, hint));
            }
            Ok(())
        }
        Some(FnArg::Receiver(r)) => Err(syn::Error::new_spanned(r, hint)),
        Some(other) => Err(syn::Error::new_spanned(other, hint)),
        None => Err(syn::Error::new(sig.paren_token.span.join(), hint)),
    }
}

/// `Some(by_ref)` when `ty` is a handler context (`CallCtx` or `PushCtx`,
/// by reference or by value); an error when it is the wrong one.
fn context_type(ty: &Type, push: bool, name: &str) -> syn::Result<Option<bool>> {
    let (inner, by_ref) = match ty {
        Type::Reference(r) if r.mutability.is_none() => (&*r.elem, true),
        other => (other, false),
    };
    let Type::Path(p) = inner else {
        return Ok(None);
    };
    let Some(last) = p.path.segments.last() else {
        return Ok(None);
    };
    let (want, other) = if push {
        ("PushCtx", "CallCtx")
    } else {
        ("CallCtx", "PushCtx")
    };
    if last.ident == want {
        Ok(Some(by_ref))
    } else if last.ident == other {
        let what = if push { "a push" } else { "a call" };
        Err(syn::Error::new_spanned(
            ty,
            format!("`{name}` is {what}: its context is `&{want}`"),
        ))
    } else {
        Ok(None)
    }
}

/// `Some` when `ty` is a stream parameter, `Items<T>` or `ItemSink<T>`
/// (by its last path segment), with `T`.
fn stream_param(ty: &Type) -> Option<(StreamParam, Type)> {
    let Type::Path(p) = ty else {
        return None;
    };
    let last = p.path.segments.last()?;
    let param = match last.ident.to_string().as_str() {
        "Items" => StreamParam::Items,
        "ItemSink" => StreamParam::Sink,
        _ => return None,
    };
    match &last.arguments {
        PathArguments::AngleBracketed(a) if a.args.len() == 1 => match &a.args[0] {
            GenericArgument::Type(t) => Some((param, t.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// `T` of a call method's `Result<T, Status>`.
fn result_ok(output: &ReturnType, name: &str) -> syn::Result<Type> {
    let wrong = |span: Span| {
        syn::Error::new(
            span,
            format!(
                "`{name}` is a call: it returns `Result<T, drpc::Status>`, T any serde type; \
                 a one-way method is marked `#[drpc(push)]` and returns nothing"
            ),
        )
    };
    let ReturnType::Type(_, ty) = output else {
        return Err(wrong(output.span()));
    };
    let Type::Path(p) = &**ty else {
        return Err(wrong(ty.span()));
    };
    let last = p.path.segments.last().ok_or_else(|| wrong(ty.span()))?;
    match &last.arguments {
        PathArguments::AngleBracketed(a) if last.ident == "Result" && a.args.len() == 2 => {
            let is_status = match &a.args[1] {
                GenericArgument::Type(Type::Path(e)) => {
                    e.path.segments.last().is_some_and(|s| s.ident == "Status")
                }
                _ => false,
            };
            if !is_status {
                return Err(syn::Error::new_spanned(
                    &a.args[1],
                    format!(
                        "`{name}`'s error is what the peer receives: make it `drpc::Status` \
                         (map yours with `.map_err(...)` or a `From` impl)"
                    ),
                ));
            }
            match &a.args[0] {
                GenericArgument::Type(t) => Ok(t.clone()),
                _ => Err(wrong(ty.span())),
            }
        }
        _ => Err(wrong(ty.span())),
    }
}

/// `ChatRoom` -> `chat_room`, `HTTPGate` -> `http_gate`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.trim_start_matches("r#").chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
