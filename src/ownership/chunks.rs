//! Upload chunks in flight. Gemini's resumable protocol takes one chunk of an
//! upload at a time, and a chunk holds a place in the upstream pool for as
//! long as its body flows: so each upload has at most one chunk in flight
//! here, and each client at most [`MAX_PER_CLIENT`], or one client's slow
//! uploads could hold every place in the pool. Kept per replica.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Chunks one client may have in flight at once, over all its uploads.
pub const MAX_PER_CLIENT: usize = 8;

#[derive(Default)]
pub struct ChunkGate {
    inner: Arc<Mutex<Flights>>,
}

#[derive(Default)]
struct Flights {
    uploads: HashSet<String>,
    clients: HashMap<Arc<str>, usize>,
}

/// Why a chunk may not start now.
#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    /// This upload already has a chunk in flight.
    Upload,
    /// The client has [`MAX_PER_CLIENT`] chunks in flight.
    Client,
}

/// A chunk's place; given back when dropped, however the chunk ends.
pub struct ChunkSlot {
    inner: Arc<Mutex<Flights>>,
    upload: String,
    client: Arc<str>,
}

impl ChunkGate {
    pub fn enter(&self, upload: &str, client: &Arc<str>) -> Result<ChunkSlot, Busy> {
        let mut flights = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if flights.uploads.contains(upload) {
            return Err(Busy::Upload);
        }
        let count = flights.clients.entry(client.clone()).or_default();
        if *count >= MAX_PER_CLIENT {
            return Err(Busy::Client);
        }
        *count += 1;
        flights.uploads.insert(upload.to_owned());
        Ok(ChunkSlot {
            inner: self.inner.clone(),
            upload: upload.to_owned(),
            client: client.clone(),
        })
    }
}

impl Drop for ChunkSlot {
    fn drop(&mut self) {
        let mut flights = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        flights.uploads.remove(&self.upload);
        if let Some(count) = flights.clients.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                flights.clients.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chunk_an_upload_and_a_few_a_client() {
        let gate = ChunkGate::default();
        let a: Arc<str> = "a".into();
        let first = gate.enter("u1", &a).unwrap();
        assert_eq!(gate.enter("u1", &a).err(), Some(Busy::Upload));
        drop(first);
        let held: Vec<ChunkSlot> = (0..MAX_PER_CLIENT)
            .map(|n| gate.enter(&format!("u{n}"), &a).unwrap())
            .collect();
        assert_eq!(gate.enter("other", &a).err(), Some(Busy::Client));
        assert!(gate.enter("other", &"b".into()).is_ok());
        drop(held);
        assert!(gate.enter("other", &a).is_ok());
    }
}
