use std::any::{Any, TypeId};

/// A map with at most one value of each type: per-session and per-message
/// storage. A short list, searched in order: it holds a handful of values
/// at most, and making one costs a single allocation per value.
#[derive(Default)]
pub(crate) struct Storage {
    values: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

impl Storage {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        let id = TypeId::of::<T>();
        match self.values.iter_mut().find(|(t, _)| *t == id) {
            Some((_, slot)) => std::mem::replace(slot, Box::new(value))
                .downcast()
                .ok()
                .map(|b| *b),
            None => {
                self.values.push((id, Box::new(value)));
                None
            }
        }
    }

    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.values
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref())
    }

    pub(crate) fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        let id = TypeId::of::<T>();
        let at = self.values.iter().position(|(t, _)| *t == id)?;
        self.values.swap_remove(at).1.downcast().ok().map(|b| *b)
    }
}
