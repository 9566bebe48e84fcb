use std::any::{Any, TypeId};
use std::collections::HashMap;

/// A map with at most one value of each type: per-session storage.
#[derive(Default)]
pub(crate) struct Storage {
    map: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Storage {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        self.map
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.get(&TypeId::of::<T>())?.downcast_ref()
    }

    pub(crate) fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.map
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }
}
