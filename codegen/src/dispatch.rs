//! The dispatch: (operation, flat JSON arguments, a per-call client) → the generated client call.
//!
//! The call is written against the method signatures progenitor actually generated, read back with
//! syn. Any disagreement with the arguments derived from the spec (a parameter missing on either
//! side, a required one that progenitor made optional, a body that is or is not there) fails the
//! build, naming the operation: generated code never drifts silently.

use crate::catalogue::{Location, Operation, camel};
use quote::ToTokens;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How progenitor passes one argument.
enum Passing {
    /// `name: &'a T`
    Ref,
    /// `name: Option<&'a T>`
    OptionRef,
    /// `name: Option<T>`
    Option,
    /// `name: T`
    Value,
}

struct GeneratedParameter {
    name: String,
    /// The owned type to deserialize into, as Rust source (`str` becomes `String`).
    owned: String,
    passing: Passing,
}

pub fn generate(operations: &[Operation], client_source: &str) -> Result<String, String> {
    let signatures = read_signatures(client_source)?;
    let mut arms = String::new();
    let mut problems = Vec::new();
    for operation in operations {
        match arm(operation, signatures.get(&operation.id)) {
            Ok(arm) => arms.push_str(&arm),
            Err(problem) => problems.push(format!("{}: {problem}", operation.id)),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "the spec and progenitor's client disagree:\n  {}",
            problems.join("\n  ")
        ));
    }
    let source = format!(
        "use super::api::Operation;
        use super::client::{{Client, types}};
        use crate::upstream::{{Arguments, DispatchError, respond}};

        /// Calls `operation` with `arguments` (the tool's flat argument object) through `client`,
        /// which carries the caller's key. Returns the success body as JSON.
        pub async fn dispatch(
            client: &Client,
            operation: Operation,
            arguments: serde_json::Map<String, serde_json::Value>,
        ) -> Result<Box<serde_json::value::RawValue>, DispatchError> {{
            #[allow(unused_mut)]
            let mut arguments = Arguments::new(arguments);
            match operation {{ {arms} }}
        }}"
    );
    let file =
        syn::parse_file(&source).map_err(|e| format!("generated dispatch does not parse: {e}"))?;
    Ok(format!(
        "{}{}",
        crate::GENERATED_HEADER,
        prettyplease::unparse(&file)
    ))
}

fn arm(
    operation: &Operation,
    signature: Option<&Vec<GeneratedParameter>>,
) -> Result<String, String> {
    let signature = signature.ok_or("progenitor generated no method for it")?;
    let mut derived: BTreeMap<&str, _> = operation
        .parameters()
        .map(|argument| (argument.wire_name.as_str(), argument))
        .collect();
    let mut body = String::new();
    let mut call = Vec::new();
    let mut saw_body = false;
    for parameter in signature {
        let variable = format!("arg_{}", parameter.name);
        if parameter.name == "body" && operation.has_body && !derived.contains_key("body") {
            saw_body = true;
            let fields: Vec<String> = operation
                .body_arguments()
                .map(|a| format!("({:?}, {:?})", a.name, a.wire_name))
                .collect();
            let _ = writeln!(
                body,
                "let {variable}: {} = arguments.body(&[{}])?;",
                parameter.owned,
                fields.join(", ")
            );
            call.push(format!("&{variable}"));
            continue;
        }
        let argument = derived.remove(parameter.name.as_str()).ok_or_else(|| {
            format!(
                "progenitor's parameter `{}` is not in the spec",
                parameter.name
            )
        })?;
        debug_assert!(argument.location != Location::Body);
        let optional = matches!(parameter.passing, Passing::Option | Passing::OptionRef);
        if optional == argument.required {
            return Err(format!(
                "parameter `{}` is {} in the spec but {} in the generated client",
                argument.wire_name,
                if argument.required {
                    "required"
                } else {
                    "optional"
                },
                if optional { "optional" } else { "required" },
            ));
        }
        let (take, pass) = match parameter.passing {
            Passing::Ref => ("required", format!("&{variable}")),
            Passing::Value => ("required", variable.clone()),
            Passing::Option => ("optional", variable.clone()),
            Passing::OptionRef if parameter.owned == "String" => {
                ("optional", format!("{variable}.as_deref()"))
            }
            Passing::OptionRef => ("optional", format!("{variable}.as_ref()")),
        };
        let owned = if optional {
            format!("Option<{}>", parameter.owned)
        } else {
            parameter.owned.clone()
        };
        let _ = writeln!(
            body,
            "let {variable}: {owned} = arguments.{take}({:?})?;",
            argument.name
        );
        call.push(pass);
    }
    if let Some(missing) = derived.keys().next() {
        return Err(format!(
            "the spec's parameter `{missing}` is not in the generated client"
        ));
    }
    if saw_body != operation.has_body {
        return Err("the spec and the generated client disagree on the request body".into());
    }
    if !operation.has_body {
        body.push_str("arguments.finish()?;\n");
    }
    Ok(format!(
        "Operation::{} => {{ {body} respond(client, client.{}({}).await) }}\n",
        camel(&operation.id),
        operation.id,
        call.join(", ")
    ))
}

/// Reads `impl Client { pub async fn <op>(&self, …) }` from progenitor's output.
fn read_signatures(
    client_source: &str,
) -> Result<BTreeMap<String, Vec<GeneratedParameter>>, String> {
    let file = syn::parse_file(client_source).map_err(|e| format!("client source: {e}"))?;
    let mut signatures = BTreeMap::new();
    for item in &file.items {
        let syn::Item::Impl(block) = item else {
            continue;
        };
        if block.trait_.is_some() || block.self_ty.to_token_stream().to_string() != "Client" {
            continue;
        }
        for member in &block.items {
            let syn::ImplItem::Fn(method) = member else {
                continue;
            };
            if method.sig.asyncness.is_none() {
                continue;
            }
            let mut parameters = Vec::new();
            for input in &method.sig.inputs {
                let syn::FnArg::Typed(typed) = input else {
                    continue;
                };
                let name = typed.pat.to_token_stream().to_string();
                parameters.push(classify(name.trim_start_matches("r#"), &typed.ty)?);
            }
            signatures.insert(method.sig.ident.to_string(), parameters);
        }
    }
    Ok(signatures)
}

fn classify(name: &str, ty: &syn::Type) -> Result<GeneratedParameter, String> {
    let owned = |ty: &syn::Type| {
        let text = ty.to_token_stream().to_string().replace(' ', "");
        if text == "str" {
            "String".to_string()
        } else {
            text
        }
    };
    let (passing, inner) = match ty {
        syn::Type::Reference(reference) => (Passing::Ref, owned(&reference.elem)),
        syn::Type::Path(path) if last_segment_is(path, "Option") => {
            match option_argument(path).ok_or_else(|| format!("{name}: unreadable Option"))? {
                syn::Type::Reference(reference) => (Passing::OptionRef, owned(&reference.elem)),
                other => (Passing::Option, owned(other)),
            }
        }
        other => (Passing::Value, owned(other)),
    };
    Ok(GeneratedParameter {
        name: name.to_string(),
        owned: inner,
        passing,
    })
}

fn last_segment_is(path: &syn::TypePath, name: &str) -> bool {
    path.path
        .segments
        .last()
        .is_some_and(|segment| segment.ident == name)
}

fn option_argument(path: &syn::TypePath) -> Option<&syn::Type> {
    let syn::PathArguments::AngleBracketed(arguments) = &path.path.segments.last()?.arguments
    else {
        return None;
    };
    match arguments.args.first()? {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}
