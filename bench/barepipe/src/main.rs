//! The "bare pipe" baseline of `bench/compare.sh`: the least a piece-verified
//! transfer over loopback can cost here, with no protocol, tracker or async.
//!
//! - `barepipe hashes FILE OUT`: writes the SHA-1 of every 512 KiB piece of
//!   FILE to OUT (20 bytes each). Done before the timer starts.
//! - `barepipe serve FILE PORT_FILE`: listens on 127.0.0.1 (port written to
//!   PORT_FILE), and on each connection reads a request `first count` (two
//!   little-endian u64, pieces) and sends those pieces with `sendfile`
//!   (`std::io::copy` from a file to a socket). Runs until killed.
//! - `barepipe fetch ADDR SIZE HASHES OUT [STREAMS]`: opens STREAMS (default
//!   4) connections, asks each for a disjoint contiguous range of pieces,
//!   and per stream reads each piece, SHA-1s it, checks it against HASHES and
//!   `pwrite`s it into OUT. Exits 0 only if every piece matched.
use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY as SHA1};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::thread;

const PIECE: u64 = 512 * 1024;

fn pieces(size: u64) -> u64 {
    size.div_ceil(PIECE)
}

fn hashes(file: &str, out: &str) -> io::Result<()> {
    let mut f = File::open(file)?;
    let mut w = BufWriter::new(File::create(out)?);
    let mut buf = vec![0u8; PIECE as usize];
    loop {
        let n = read_full(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        w.write_all(digest(&SHA1, &buf[..n]).as_ref())?;
    }
    w.flush()
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn serve(file: &str, port_file: &str) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    std::fs::write(port_file, format!("{}\n", listener.local_addr()?.port()))?;
    for conn in listener.incoming() {
        let (mut sock, mut f) = (conn?, File::open(file)?);
        thread::spawn(move || -> io::Result<()> {
            let mut req = [0u8; 16];
            sock.read_exact(&mut req)?;
            let first = u64::from_le_bytes(req[..8].try_into().unwrap());
            let count = u64::from_le_bytes(req[8..].try_into().unwrap());
            f.seek(SeekFrom::Start(first * PIECE))?;
            io::copy(&mut f.take(count * PIECE), &mut sock)?;
            Ok(())
        });
    }
    Ok(())
}

fn fetch_range(
    addr: &str,
    size: u64,
    want: &[u8],
    out: &File,
    first: u64,
    count: u64,
) -> io::Result<()> {
    let mut sock = TcpStream::connect(addr)?;
    let mut req = [0u8; 16];
    req[..8].copy_from_slice(&first.to_le_bytes());
    req[8..].copy_from_slice(&count.to_le_bytes());
    sock.write_all(&req)?;
    let mut buf = vec![0u8; PIECE as usize];
    for i in first..first + count {
        let len = PIECE.min(size - i * PIECE) as usize;
        sock.read_exact(&mut buf[..len])?;
        let h = digest(&SHA1, &buf[..len]);
        if h.as_ref() != &want[i as usize * 20..i as usize * 20 + 20] {
            return Err(io::Error::other(format!("piece {i}: SHA-1 mismatch")));
        }
        out.write_all_at(&buf[..len], i * PIECE)?;
    }
    Ok(())
}

fn fetch(addr: &str, size: u64, hashes: &str, out: &str, streams: u64) -> io::Result<()> {
    let want = std::fs::read(hashes)?;
    let n = pieces(size);
    if want.len() as u64 != n * 20 {
        return Err(io::Error::other("hash file does not match the size"));
    }
    let out = File::options().write(true).create_new(true).open(out)?;
    out.set_len(size)?;
    let per = n.div_ceil(streams.max(1));
    thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|k| (k * per, per.min(n.saturating_sub(k * per))))
            .filter(|&(_, count)| count > 0)
            .map(|(first, count)| {
                let (want, out) = (&want, &out);
                s.spawn(move || fetch_range(addr, size, want, out, first, count))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("fetch thread panicked"))
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = match a.as_slice() {
        ["hashes", file, out] => hashes(file, out),
        ["serve", file, port_file] => serve(file, port_file),
        ["fetch", addr, size, h, out, rest @ ..] if rest.len() <= 1 => {
            match (size.parse(), rest.first().map_or(Ok(4), |s| s.parse())) {
                (Ok(size), Ok(streams)) => fetch(addr, size, h, out, streams),
                _ => Err(io::Error::other("SIZE and STREAMS are integers")),
            }
        }
        _ => {
            eprintln!("usage: barepipe hashes FILE OUT | serve FILE PORT_FILE | fetch ADDR SIZE HASHES OUT [STREAMS]");
            return ExitCode::from(2);
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("barepipe: {e}");
            ExitCode::FAILURE
        }
    }
}
