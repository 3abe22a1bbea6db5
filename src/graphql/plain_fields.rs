//! A shorter way through async-graphql for the objects a page holds hundreds of (runs, task
//! runs, states). async-graphql resolves every selected field as a boxed future of its own,
//! polled through a `FuturesUnordered`, even a field that only copies a value out of a row;
//! on a 50-run page with nested task runs that was ~1,400 futures. Here fields that need nothing
//! but the object itself are answered in place, and only the rest (loaders) go through the
//! object's own resolvers. A field whose value is an object (or a list of them) is answered in
//! place too when its resolver awaits nothing and every field it selects is plain, recursively:
//! a page of runs loads its runs' relations ahead (`runs::PageRelations`), so a whole page
//! resolves without a future per run.
//!
//! Anything unusual (fragments, custom directives, a response key used twice) takes
//! async-graphql's own path, so the answer is always what it would have been.
use std::borrow::Cow;

use async_graphql::parser::types::{Field, Selection};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::{resolve_container, ContainerType};
use async_graphql::{
    Context, ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
};
use futures_util::future::BoxFuture;

/// An object some of whose fields are values of the object alone.
pub trait PlainFields: ContainerType + Send + Sync {
    /// The value of the field `ctx` is about when it is one of those, from the field's own
    /// resolver through [`ready`]; `None` sends the field the usual way.
    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value>;
}

/// `T` as the same GraphQL type, its selection sets resolved by [`resolve`].
pub struct Plain<T>(pub T);

impl<T: PlainFields> OutputType for Plain<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve(ctx, &self.0).await
    }
}

/// Resolves `object`'s selection set as `resolve_container` does.
pub async fn resolve<T: PlainFields>(
    ctx: &ContextSelectionSet<'_>,
    object: &T,
) -> ServerResult<Value> {
    let Some(fields) = plain_selection(ctx) else {
        return resolve_container(ctx, object).await;
    };
    let mut values: Vec<(Name, Option<Value>)> = Vec::with_capacity(fields.len());
    // Boxed, as async-graphql boxes them: objects nest in each other (a task run's flow run).
    let mut resolving: Vec<BoxFuture<'_, (usize, ServerResult<Option<Value>>)>> = Vec::new();
    for field in fields {
        let key = field.node.response_key().node.clone();
        let plain = plain_value_of(ctx, object, field);
        if plain.is_none() {
            let index = values.len();
            resolving.push(Box::pin(async move {
                let ctx_field = ctx.with_field(field);
                (index, object.resolve_field(&ctx_field).await)
            }));
        }
        values.push((key, plain));
    }
    // Concurrently, as async-graphql does, so that loaders batch across the page.
    for (index, result) in futures_util::future::join_all(resolving).await {
        match result {
            Ok(value) => values[index].1 = Some(value.unwrap_or_default()),
            Err(err) => ctx.add_error(err),
        }
    }
    // Sized up front: collected from a filtering iterator, the map would grow (and rehash) from
    // nothing, field by field.
    let mut object = async_graphql::indexmap::IndexMap::with_capacity(values.len());
    for (key, value) in values {
        if let Some(value) = value {
            object.insert(key, value);
        }
    }
    Ok(if object.is_empty() {
        Value::Null
    } else {
        Value::Object(object)
    })
}

fn plain_value_of<T: PlainFields>(
    ctx: &ContextSelectionSet<'_>,
    object: &T,
    field: &Positioned<Field>,
) -> Option<Value> {
    if field.node.name.node.as_str() == "__typename" {
        Some(Value::String(object.introspection_type_name().into_owned()))
    } else {
        object.plain_field(&ctx.with_field(field))
    }
}

/// `object`'s selection set, resolved here and now if every selected field is plain (nested
/// objects included); `None` sends the whole selection the usual way.
fn resolve_in_place<T: PlainFields>(ctx: &ContextSelectionSet<'_>, object: &T) -> Option<Value> {
    let fields = plain_selection(ctx)?;
    let mut values = async_graphql::indexmap::IndexMap::with_capacity(fields.len());
    for field in fields {
        let value = plain_value_of(ctx, object, field)?;
        values.insert(field.node.response_key().node.clone(), value);
    }
    Some(Value::Object(values))
}

/// What a resolver written as `-> T` or `-> Result<T, E>` gives back.
pub trait ResolverOutput {
    type Value;
    /// The value, or `None` for an error (the field then goes the usual way and fails there).
    fn value(self) -> Option<Self::Value>;
}

impl<T, E> ResolverOutput for Result<T, E> {
    type Value = T;
    fn value(self) -> Option<T> {
        self.ok()
    }
}

impl<T> ResolverOutput for Plain<T> {
    type Value = Self;
    fn value(self) -> Option<Self> {
        Some(self)
    }
}

impl<T> ResolverOutput for Vec<T> {
    type Value = Self;
    fn value(self) -> Option<Self> {
        Some(self)
    }
}

impl ResolverOutput for super::pagination::PageInfo {
    type Value = Self;
    fn value(self) -> Option<Self> {
        Some(self)
    }
}

/// The output of a resolver that awaits nothing.
fn ready_output<R: ResolverOutput>(
    resolver: impl std::future::Future<Output = async_graphql::Result<R>>,
) -> Option<R::Value> {
    futures_util::FutureExt::now_or_never(resolver)?
        .ok()?
        .value()
}

/// The value of an object-typed field (`ctx`'s field) whose resolver awaits nothing, its
/// selection set resolved in place; `None` if the resolver waited or failed, or a selected
/// field is not plain (the field then goes the usual way).
pub fn ready_object<T: PlainFields, R: ResolverOutput<Value = T>>(
    ctx: &Context<'_>,
    resolver: impl std::future::Future<Output = async_graphql::Result<R>>,
) -> Option<Value> {
    let object = ready_output(resolver)?;
    resolve_in_place(
        &ctx.with_selection_set(&ctx.item.node.selection_set),
        &object,
    )
}

/// [`ready_object`] for a field that may be null.
pub fn ready_optional_object<T: PlainFields, R: ResolverOutput<Value = Option<T>>>(
    ctx: &Context<'_>,
    resolver: impl std::future::Future<Output = async_graphql::Result<R>>,
) -> Option<Value> {
    match ready_output(resolver)? {
        Some(object) => resolve_in_place(
            &ctx.with_selection_set(&ctx.item.node.selection_set),
            &object,
        ),
        None => Some(Value::Null),
    }
}

/// [`ready_object`] for a list of objects.
pub fn ready_list<T: PlainFields, R: ResolverOutput<Value = Vec<T>>>(
    ctx: &Context<'_>,
    resolver: impl std::future::Future<Output = async_graphql::Result<R>>,
) -> Option<Value> {
    let objects = ready_output(resolver)?;
    let ctx = ctx.with_selection_set(&ctx.item.node.selection_set);
    let values = objects
        .iter()
        .map(|object| resolve_in_place(&ctx, object))
        .collect::<Option<Vec<_>>>()?;
    Some(Value::List(values))
}

impl<T: PlainFields> PlainFields for Plain<T> {
    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        self.0.plain_field(ctx)
    }
}

impl<T: PlainFields> ContainerType for Plain<T> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        self.0.resolve_field(ctx).await
    }
}

/// The selected fields, if they are all plain fields (no fragment, no directive left after
/// `@skip`/`@include` were applied) with distinct response keys, and no extension listens.
/// (The schema registers no extension: one with a per-field `resolve` hook would not see the
/// fields answered here.)
fn plain_selection<'a>(ctx: &ContextSelectionSet<'a>) -> Option<Vec<&'a Positioned<Field>>> {
    let items = &ctx.item.node.items;
    let mut fields = Vec::with_capacity(items.len());
    for selection in items {
        let Selection::Field(field) = &selection.node else {
            return None;
        };
        if !field.node.directives.is_empty() {
            return None;
        }
        let key = &field.node.response_key().node;
        if fields
            .iter()
            .any(|f: &&Positioned<Field>| &f.node.response_key().node == key)
        {
            return None;
        }
        fields.push(field);
    }
    Some(fields)
}

/// The value of a resolver that awaits nothing, as async-graphql would give it; `None` if the
/// resolver waited or failed (the field then goes the usual way, and fails there).
pub fn ready<T: PlainValue>(
    resolver: impl std::future::Future<Output = async_graphql::Result<T>>,
) -> Option<Value> {
    let value = futures_util::FutureExt::now_or_never(resolver)?.ok()?;
    Some(value.plain_value())
}

/// A leaf value, converted as its `OutputType` converts it.
pub trait PlainValue {
    fn plain_value(self) -> Value;
}

macro_rules! scalar_plain_values {
    ($($ty:ty),+ $(,)?) => {$(
        impl PlainValue for $ty {
            fn plain_value(self) -> Value {
                async_graphql::ScalarType::to_value(&self)
            }
        }
    )+};
}

scalar_plain_values!(uuid::Uuid, chrono::DateTime<chrono::Utc>, i32, f64, bool,);

impl PlainValue for &str {
    fn plain_value(self) -> Value {
        Value::String(self.to_owned())
    }
}

impl PlainValue for Vec<String> {
    fn plain_value(self) -> Value {
        Value::List(self.into_iter().map(Value::String).collect())
    }
}

impl<T: PlainValue> PlainValue for Option<T> {
    fn plain_value(self) -> Value {
        self.map_or(Value::Null, PlainValue::plain_value)
    }
}
