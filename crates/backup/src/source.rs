//! The snapshot source: every file tree, the config file and the named streams, composed into
//! one rustic `ReadSource` in path order, with every read error recorded.
//!
//! rustic_core only logs read errors and failed sources as warnings and still saves the
//! snapshot; this module records them in a [`Tracker`] so the engine can report a partial
//! backup or throw the snapshot away.

use crate::stream::{StreamSource, STREAMS_DIR};
use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    Excludes, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, ReadSource, ReadSourceEntry,
    ReadSourceOpen, RusticResult,
};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Chunk handed from a stream's producer thread to the archiver. With [`CHANNEL_DEPTH`] this
/// bounds a stream's buffered data to a few MiB whatever its size.
const CHUNK: usize = 1 << 20;
const CHANNEL_DEPTH: usize = 4;

#[derive(Clone, Debug, Default)]
pub(crate) struct StreamResult {
    pub opened: bool,
    pub bytes: u64,
    pub error: Option<String>,
}

/// What happened while the archiver read the source.
#[derive(Default)]
pub(crate) struct Tracker {
    pub read_errors: Mutex<Vec<String>>,
    pub streams: Mutex<BTreeMap<String, StreamResult>>,
    producers: Mutex<Vec<JoinHandle<()>>>,
}

impl Tracker {
    fn error(&self, msg: String) {
        self.read_errors.lock().unwrap().push(msg);
    }

    /// Waits for every stream producer to end (they end once their reader is gone).
    pub fn join_producers(&self) {
        let handles: Vec<_> = std::mem::take(&mut *self.producers.lock().unwrap());
        for h in handles {
            let _ = h.join();
        }
    }
}

type SharedStream = Arc<Mutex<Option<Box<dyn StreamSource>>>>;

enum Segment {
    Local { root: PathBuf, source: Box<LocalSource> },
    Streams { root: PathBuf, streams: Vec<(String, SharedStream)> },
}

impl Segment {
    fn root(&self) -> &Path {
        match self {
            Segment::Local { root, .. } | Segment::Streams { root, .. } => root,
        }
    }
}

pub(crate) struct CompositeSource {
    segments: Vec<Segment>,
    tracker: Arc<Tracker>,
}

/// One file tree (or single file) of the snapshot.
pub(crate) struct LocalPart {
    pub path: PathBuf,
    pub exclude: Vec<String>,
}

impl CompositeSource {
    pub fn new(parts: &[LocalPart], streams: Vec<Box<dyn StreamSource>>, tracker: Arc<Tracker>) -> RusticResult<Self> {
        let mut segments = Vec::new();
        for part in parts {
            let mut excludes = Excludes::default();
            // Override globs whitelist by default; `!` turns a pattern into an exclude.
            excludes.globs = part.exclude.iter().map(|g| format!("!{g}")).collect();
            let source = LocalSource::new(
                LocalSourceSaveOptions::default(),
                &excludes,
                &LocalSourceFilterOptions::default(),
                std::slice::from_ref(&part.path),
            )?;
            segments.push(Segment::Local { root: part.path.clone(), source: Box::new(source) });
        }
        if !streams.is_empty() {
            let mut streams: Vec<(String, SharedStream)> =
                streams.into_iter().map(|s| (s.name().to_string(), Arc::new(Mutex::new(Some(s))))).collect();
            streams.sort_by(|a, b| a.0.cmp(&b.0));
            segments.push(Segment::Streams { root: PathBuf::from(STREAMS_DIR), streams });
        }
        // Depth-first path order is what rustic's tree builder needs; roots never nest (the
        // engine checks), so sorting the segments by root keeps the whole walk in order.
        segments.sort_by(|a, b| a.root().cmp(b.root()));
        Ok(CompositeSource { segments, tracker })
    }
}

pub(crate) enum Opener {
    Local { path: PathBuf, open: <LocalSource as ReadSource>::Open, tracker: Arc<Tracker> },
    Stream { name: String, stream: SharedStream, tracker: Arc<Tracker> },
}

impl ReadSourceOpen for Opener {
    type Reader = Box<dyn Read + Send + 'static>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self {
            Opener::Local { path, open, tracker } => match open.open() {
                Ok(r) => Ok(Box::new(TrackedReader { inner: r, path, tracker, failed: false })),
                Err(e) => {
                    tracker.error(format!("{}: {}", path.display(), e.display_log()));
                    Err(e)
                }
            },
            Opener::Stream { name, stream, tracker } => Ok(Box::new(start_stream(name, stream, tracker))),
        }
    }
}

struct TrackedReader<R> {
    inner: R,
    path: PathBuf,
    tracker: Arc<Tracker>,
    failed: bool,
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if !self.failed {
                self.failed = true;
                self.tracker.error(format!("{}: {e}", self.path.display()));
            }
        })
    }
}

fn start_stream(name: String, stream: SharedStream, tracker: Arc<Tracker>) -> ChannelReader {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(CHANNEL_DEPTH);
    let taken = stream.lock().unwrap().take();
    tracker.streams.lock().unwrap().entry(name.clone()).or_default().opened = true;
    let t = tracker.clone();
    let stream_name = name.clone();
    let handle = std::thread::spawn(move || {
        let Some(mut source) = taken else {
            record_stream(&t, &stream_name, 0, Some("stream was opened twice".into()));
            let _ = tx.send(Err(io::Error::other("stream was opened twice")));
            return;
        };
        let mut w = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK), count: 0 };
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let n = source.write_to(&mut w)?;
            w.flush()?;
            Ok::<u64, io::Error>(n)
        }));
        let error = match res {
            Ok(Ok(n)) if n == w.count => None,
            Ok(Ok(n)) => Some(format!("stream reported {n} bytes but wrote {}", w.count)),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("stream producer panicked".to_string()),
        };
        // Record before the reader can see the end of the stream.
        record_stream(&t, &stream_name, w.count, error.clone());
        if let Some(e) = error {
            let _ = tx.send(Err(io::Error::other(e)));
        }
    });
    tracker.producers.lock().unwrap().push(handle);
    ChannelReader { rx, buf: Vec::new(), pos: 0, failed: None }
}

fn record_stream(t: &Tracker, name: &str, bytes: u64, error: Option<String>) {
    let mut streams = t.streams.lock().unwrap();
    let r = streams.entry(name.to_string()).or_default();
    r.bytes = bytes;
    r.error = error;
}

struct ChannelWriter {
    tx: SyncSender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    count: u64,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.count += n as u64;
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the backup stopped reading this stream"))
    }
}

struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    failed: Option<String>,
}

impl Read for ChannelReader {
    /// Fills `out` completely unless the stream ends or fails: rustic_core's chunker shrinks
    /// its read buffer to the size of each read it gets, so short reads at the end of each
    /// channel message would ratchet it down to a few bytes per call (measured: this
    /// function at 22 % of an unchanged stream backup before it filled whole buffers).
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.pos >= self.buf.len() {
                if let Some(e) = &self.failed {
                    if n > 0 {
                        break;
                    }
                    return Err(io::Error::other(e.clone()));
                }
                match self.rx.recv() {
                    Ok(Ok(chunk)) => {
                        self.buf = chunk;
                        self.pos = 0;
                        continue;
                    }
                    Ok(Err(e)) => {
                        self.failed = Some(e.to_string());
                        if n > 0 {
                            break;
                        }
                        return Err(e);
                    }
                    Err(_) => break,
                }
            }
            let k = (out.len() - n).min(self.buf.len() - self.pos);
            out[n..n + k].copy_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
            n += k;
        }
        Ok(n)
    }
}

type EntryIter = Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<Opener>>> + Send>;

impl ReadSource for CompositeSource {
    type Open = Opener;
    type Iter = EntryIter;

    fn size(&self) -> RusticResult<Option<u64>> {
        let mut total = 0;
        for s in &self.segments {
            if let Segment::Local { source, .. } = s {
                total += source.size()?.unwrap_or(0);
            }
        }
        Ok(Some(total))
    }

    fn entries(&self) -> Self::Iter {
        let mut iters: Vec<EntryIter> = Vec::new();
        for s in &self.segments {
            match s {
                Segment::Local { source, .. } => {
                    let tracker = self.tracker.clone();
                    iters.push(Box::new(source.entries().map(move |item| match item {
                        Ok(e) => Ok(ReadSourceEntry {
                            open: e.open.map(|open| Opener::Local {
                                path: e.path.clone(),
                                open,
                                tracker: tracker.clone(),
                            }),
                            path: e.path,
                            node: e.node,
                        }),
                        Err(err) => {
                            tracker.error(err.display_log());
                            Err(err)
                        }
                    })));
                }
                Segment::Streams { root, streams } => {
                    // Fresh metadata for every run: a parent snapshot's entry must never match
                    // (it would silently reuse an old dump).
                    let now = jiff::Timestamp::now();
                    let entries: Vec<_> = streams
                        .iter()
                        .enumerate()
                        .map(|(i, (name, stream))| {
                            let meta = Metadata {
                                mode: Some(0o600),
                                mtime: Some(now),
                                ctime: Some(now),
                                inode: now.as_nanosecond() as u64 ^ (i as u64 + 1),
                                ..Metadata::default()
                            };
                            Ok(ReadSourceEntry {
                                path: root.join(name),
                                node: Node::new_node(OsStr::new(name), NodeType::File, meta),
                                open: Some(Opener::Stream {
                                    name: name.clone(),
                                    stream: stream.clone(),
                                    tracker: self.tracker.clone(),
                                }),
                            })
                        })
                        .collect();
                    iters.push(Box::new(entries.into_iter()));
                }
            }
        }
        Box::new(iters.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(messages: Vec<io::Result<Vec<u8>>>) -> ChannelReader {
        let (tx, rx) = sync_channel(messages.len());
        for m in messages {
            tx.send(m).unwrap();
        }
        ChannelReader { rx, buf: Vec::new(), pos: 0, failed: None }
    }

    #[test]
    fn reads_fill_the_buffer_across_messages_then_end() {
        let mut r = reader(vec![Ok(vec![1; 10]), Ok(vec![2; 10]), Ok(vec![3; 10])]);
        let mut buf = [0u8; 25];
        assert_eq!(r.read(&mut buf).unwrap(), 25, "a short read would shrink rustic's chunker buffer");
        assert_eq!(&buf[..], &[[1u8; 10].as_slice(), &[2; 10], &[3; 5]].concat()[..]);
        assert_eq!(r.read(&mut buf).unwrap(), 5);
        assert_eq!(r.read(&mut buf).unwrap(), 0, "end of stream");
    }

    #[test]
    fn a_failure_after_data_gives_the_data_then_the_error() {
        let mut r = reader(vec![Ok(vec![7; 4]), Err(io::Error::other("pg_dump: connection lost"))]);
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        let e = r.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("connection lost"), "{e}");
        assert!(r.read(&mut buf).is_err(), "the error sticks");
    }
}
