//! Where trace lines go: [`TraceWriter`] appends each line to one shared buffer, and a thread of
//! its own writes the buffer out. Request threads never wait on the output.
//!
//! Why not a channel of lines (`tracing-appender`): a line per message cost an allocation on the
//! request thread and a free on the writer thread, and a slot in a channel both touched; on a
//! `tools/call` that was a visible share of the trace's cost. Here a line costs an uncontended
//! lock and a copy, the writer takes the whole buffer at once (swapping in an empty one with room
//! kept), and lines stay in the order they were written.
//!
//! - An idle writer sleeps on a condition variable and is woken by the line that finds the
//!   buffer empty, so a lone line shows at once. Under load it rests [`PACE`] after each write,
//!   letting that moment's lines gather into one write; it wakes at most every [`PACE`].
//! - The buffer is bounded ([`MAX_BUFFERED`]): when the output cannot keep up, lines beyond it
//!   are dropped and counted, and the count is reported when the trace stops.
//! - Writes go out in pieces that end at a line break and are at most `PIPE_BUF` bytes, so a
//!   reader of a pipe never sees a torn line, even from a process stopped mid-write.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long the writer rests after each write while lines keep coming.
pub const PACE: Duration = Duration::from_millis(10);

/// Bytes the buffer may hold before lines are dropped: some 25,000 lines, far more than arrive
/// in [`PACE`]; the writer falls behind only when the output does.
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;

/// At most this much per `write`: `PIPE_BUF` on Linux, what a pipe writes atomically.
const PIECE: usize = 4096;

/// A buffer that grew past this (a burst) is given back once written.
const KEEP_CAPACITY: usize = 256 * 1024;

struct Shared {
    buffer: Mutex<Vec<u8>>,
    wake: Condvar,
    dropped: AtomicU64,
    closed: AtomicBool,
}

/// The `MakeWriter` of the trace layer: each line is appended to the shared buffer.
#[derive(Clone)]
pub struct TraceWriter(Arc<Shared>);

/// Keeps the writer thread running; dropping it writes what is buffered and stops the thread,
/// waiting at most [`STOP_WAIT`] for an output that does not move (a pipe nobody reads).
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Disconnected when the writer thread has ended.
    stopped: std::sync::mpsc::Receiver<()>,
}

/// How long dropping the guard waits for the buffered lines to be written.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

impl WriterGuard {
    /// Lines dropped so far because the output fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// A writer of lines to `output`, and the guard of its thread. `Err` when the thread cannot be
/// started.
pub fn spawn(
    output: impl Write + Send + 'static,
    thread_name: &str,
) -> std::io::Result<(TraceWriter, WriterGuard)> {
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Vec::new()),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
        closed: AtomicBool::new(false),
    });
    let writer = Arc::clone(&shared);
    let (ended, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || {
            let _ended = ended;
            write_out(&writer, output)
        })?;
    Ok((
        TraceWriter(Arc::clone(&shared)),
        WriterGuard {
            shared,
            thread: Some(thread),
            stopped,
        },
    ))
}

/// The writer thread: waits for lines, takes them all, writes them, rests; until closed and
/// empty.
fn write_out(shared: &Shared, mut output: impl Write) {
    let mut taken = Vec::new();
    loop {
        {
            let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            while buffer.is_empty() && !shared.closed.load(Ordering::Acquire) {
                buffer = shared.wake.wait(buffer).unwrap_or_else(|e| e.into_inner());
            }
            if buffer.is_empty() {
                return;
            }
            std::mem::swap(&mut *buffer, &mut taken);
        }
        // A failing output (a closed pipe) loses these lines; there is nowhere to report it.
        let _ = write_pieces(&mut output, &taken);
        let _ = output.flush();
        taken.clear();
        if taken.capacity() > KEEP_CAPACITY {
            taken = Vec::new();
        }
        if !shared.closed.load(Ordering::Acquire) {
            std::thread::sleep(PACE);
        }
    }
}

/// Writes `bytes` in pieces of at most [`PIECE`] bytes that end at a line break (a longer line
/// goes out whole).
fn write_pieces(output: &mut impl Write, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let end = if bytes.len() <= PIECE {
            bytes.len()
        } else {
            match bytes[..PIECE].iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None => bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |newline| newline + 1),
            }
        };
        output.write_all(&bytes[..end])?;
        bytes = &bytes[end..];
    }
    Ok(())
}

impl TraceWriter {
    fn append(&self, line: &[u8]) {
        let shared = &*self.0;
        let was_empty = {
            let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.len() + line.len() > MAX_BUFFERED {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let was_empty = buffer.is_empty();
            buffer.extend_from_slice(line);
            was_empty
        };
        // Only the line that finds the buffer empty wakes the writer: under load the writer is
        // resting or writing, and takes the lines when it comes back.
        if was_empty {
            shared.wake.notify_one();
        }
    }
}

impl Write for &TraceWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TraceWriter {
    type Writer = &'a TraceWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        {
            // Taken so that the writer is either waiting (and gets the wake-up) or has not yet
            // checked `closed` (and sees it).
            let _buffer = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_one();
        }
        // The thread ends once the buffer is written; an output that does not move keeps it
        // writing, and the process then stops without it rather than hang.
        let ended = matches!(
            self.stopped.recv_timeout(STOP_WAIT),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
        if let Some(thread) = self.thread.take()
            && ended
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorded {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_are_written_whole_in_order_of_writing() {
        let recorded = Recorded::default();
        let (writer, guard) = spawn(recorded.clone(), "test-trace").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let line = format!("thread {t} line {i:05} {}\n", "x".repeat(i % 300));
                        (&writer).write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(guard.dropped(), 0);
        drop(guard);
        let writes = recorded.0.lock().unwrap().clone();
        assert!(
            writes
                .iter()
                .all(|w| w.len() <= PIECE && w.ends_with(b"\n"))
        );
        let text = String::from_utf8(writes.concat()).unwrap();
        assert_eq!(text.lines().count(), 8_000);
        for t in 0..4 {
            let own: Vec<usize> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .map(|l| l.split(' ').nth(3).unwrap().parse().unwrap())
                .collect();
            assert_eq!(
                own,
                (0..2_000).collect::<Vec<_>>(),
                "thread {t}'s lines in order"
            );
        }
    }

    #[test]
    fn a_lone_line_is_written_at_once() {
        let recorded = Recorded::default();
        let (writer, _guard) = spawn(recorded.clone(), "test-trace").unwrap();
        (&writer).write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while recorded.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(recorded.0.lock().unwrap().concat(), b"one line\n");
    }

    /// An output that never returns until released: the buffer fills, later lines are dropped
    /// and counted, and what was buffered is written once the output moves again.
    #[test]
    fn a_stalled_output_drops_and_counts_lines_beyond_the_buffer() {
        #[derive(Clone)]
        struct Stalled(Arc<(Mutex<bool>, Condvar)>, Recorded);
        impl Write for Stalled {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let (released, moved) = &*self.0;
                let mut released = released.lock().unwrap();
                while !*released {
                    released = moved.wait(released).unwrap();
                }
                self.1.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let recorded = Recorded::default();
        let (writer, guard) = spawn(Stalled(Arc::clone(&gate), recorded.clone()), "t").unwrap();
        let line = [b'x'; 1023]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        // The first line is taken by the writer, which then stalls; the buffer then holds
        // MAX_BUFFERED / 1024 more lines.
        let sent = MAX_BUFFERED / 1024 + 100;
        (&writer).write_all(&line).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for _ in 1..sent {
            (&writer).write_all(&line).unwrap();
        }
        assert_eq!(guard.dropped(), 99);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let written = recorded.0.lock().unwrap().concat();
        assert_eq!(written.len(), (sent - 99) * 1024);
    }

    /// An output that never moves does not keep the guard's drop waiting past [`STOP_WAIT`].
    #[test]
    fn a_stuck_output_does_not_hang_the_stop() {
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                loop {
                    std::thread::park();
                }
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (writer, guard) = spawn(Stuck, "test-trace").unwrap();
        (&writer).write_all(b"never written\n").unwrap();
        let started = std::time::Instant::now();
        drop(guard);
        let waited = started.elapsed();
        assert!(waited >= STOP_WAIT && waited < STOP_WAIT * 3, "{waited:?}");
    }

    #[test]
    fn pieces_end_at_line_breaks() {
        let mut out = Recorded::default();
        let long = "y".repeat(5000);
        let text = format!("a\n{}\nb\n{long}\nc\n", "z".repeat(4090));
        write_pieces(&mut out, text.as_bytes()).unwrap();
        let writes = out.0.lock().unwrap().clone();
        assert_eq!(writes.concat(), text.as_bytes());
        assert!(writes.iter().all(|w| w.ends_with(b"\n")));
        assert!(
            writes
                .iter()
                .all(|w| w.len() <= PIECE || w.len() == long.len() + 1)
        );
    }
}
