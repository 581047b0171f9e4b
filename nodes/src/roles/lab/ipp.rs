//! A small IPP/1.1 client (RFC 8010 encoding, RFC 8011 operations) over plain HTTP:
//! enough to print a document on a CUPS queue and follow the job — Print-Job,
//! Get-Job-Attributes, Get-Printer-Attributes, Cancel-Job. Every answer is parsed
//! within bounds (`printmesh_formats::ipp`): a printer is outside the lab's trust.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use printmesh_formats::ipp::*;

/// What follows the IPP request in the HTTP body.
#[derive(Clone, Copy)]
enum Document<'a> {
    Bytes(&'a [u8]),
    File(&'a std::path::Path),
}

/// A connection-per-request IPP client for one printer.
#[derive(Clone, Debug)]
pub struct Client {
    pub uri: PrinterUri,
    pub user: String,
    next_id: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

/// A job's state (RFC 8011 §5.3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Held,
    Processing,
    Stopped,
    Canceled,
    Aborted,
    Completed,
    Unknown(i32),
}

impl JobState {
    pub fn from_enum(n: i32) -> JobState {
        match n {
            3 => JobState::Pending,
            4 => JobState::Held,
            5 => JobState::Processing,
            6 => JobState::Stopped,
            7 => JobState::Canceled,
            8 => JobState::Aborted,
            9 => JobState::Completed,
            other => JobState::Unknown(other),
        }
    }
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Canceled | JobState::Aborted | JobState::Completed
        )
    }
}

/// What the printer says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterStatus {
    /// 3 idle, 4 processing, 5 stopped.
    pub state: i32,
    pub reasons: Vec<String>,
    pub accepting: bool,
}

impl PrinterStatus {
    pub fn describe(&self) -> String {
        let state = match self.state {
            3 => "idle",
            4 => "printing",
            5 => "stopped",
            _ => "unknown",
        };
        let reasons: Vec<&str> = self
            .reasons
            .iter()
            .map(|s| s.as_str())
            .filter(|r| *r != "none")
            .collect();
        let mut out = state.to_string();
        if !self.accepting {
            out.push_str(", not accepting jobs");
        }
        if !reasons.is_empty() {
            out.push_str(&format!(" ({})", reasons.join(", ")));
        }
        out
    }
}

/// The name of the system user this process runs as, which is what CUPS's own tools
/// send as `requesting-user-name` (and what a print server's policies and job list
/// go by): `$USER`, `$LOGNAME`, else the password-file entry of the process's uid.
/// A name that is no user on the print server is worse than odd: Debian 12's cupsd
/// (2.4.2) crashes on a job of such a user when it checks the user's groups (a
/// Cancel-Job, a job queued on a stopped printer; seen here, under gdb: SIGSEGV).
pub fn system_user_name() -> Option<String> {
    let named = |v: String| Some(v).filter(|v| !v.is_empty() && v.len() <= 64);
    if let Some(name) = std::env::var("USER")
        .ok()
        .and_then(named)
        .or_else(|| std::env::var("LOGNAME").ok().and_then(named))
    {
        return Some(name);
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let uid_field = fields.nth(1)?;
        (uid_field == uid).then(|| name.to_string()).and_then(named)
    })
}

impl Client {
    pub fn new(uri: &str, user: &str) -> Result<Client, IppError> {
        Ok(Client {
            uri: PrinterUri::parse(uri)?,
            user: user.chars().filter(|c| c.is_ascii_graphic()).collect(),
            next_id: std::sync::Arc::new(std::sync::atomic::AtomicU32::new(1)),
        })
    }

    fn request(&self, operation: u16) -> Request {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut r = Request::new(operation, id, &self.uri.ipp_uri());
        r.op_attr("requesting-user-name", Value::text(tag::NAME, &self.user));
        r
    }

    async fn send(&self, request: &Request, document: &[u8]) -> Result<Response, IppError> {
        self.send_doc(request, Document::Bytes(document)).await
    }

    async fn send_doc(
        &self,
        request: &Request,
        document: Document<'_>,
    ) -> Result<Response, IppError> {
        tokio::time::timeout(TIMEOUT, self.send_inner(request, document))
            .await
            .map_err(|_| IppError::Timeout)?
    }

    async fn send_inner(
        &self,
        request: &Request,
        document: Document<'_>,
    ) -> Result<Response, IppError> {
        let addr = format!("{}:{}", self.uri.host, self.uri.port);
        let mut stream = TcpStream::connect(&addr)
            .await
            .map_err(|source| IppError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let ipp = request.encode();
        let (mut file, doc_len) = match document {
            Document::Bytes(b) => (None, b.len() as u64),
            Document::File(p) => {
                let f = tokio::fs::File::open(p).await?;
                let len = f.metadata().await?.len();
                (Some(f), len)
            }
        };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.uri.path,
            ipp.len() as u64 + doc_len
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&ipp).await?;
        match (document, file.as_mut()) {
            (Document::Bytes(b), _) => stream.write_all(b).await?,
            (Document::File(_), Some(f)) => {
                let sent = tokio::io::copy(&mut f.take(doc_len), &mut stream).await?;
                if sent != doc_len {
                    return Err(IppError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the document file shrank while it was sent",
                    )));
                }
            }
            (Document::File(_), None) => {}
        }
        stream.flush().await?;
        let mut raw = Vec::new();
        let limit = u64::try_from(MAX_RESPONSE_BYTES + 64 * 1024).unwrap_or(u64::MAX);
        (&mut stream).take(limit).read_to_end(&mut raw).await?;
        let (status, body) = parse_http(&raw)?;
        if status != 200 {
            return Err(IppError::Http(status));
        }
        Response::parse(&body)
    }

    /// Prints the file at `path` (of MIME type `format`) as job `name`, streamed from
    /// disk; returns the job id.
    pub async fn print_file(
        &self,
        name: &str,
        format: &str,
        path: &std::path::Path,
    ) -> Result<i32, IppError> {
        self.print(name, format, Document::File(path)).await
    }

    async fn print(
        &self,
        name: &str,
        format: &str,
        document: Document<'_>,
    ) -> Result<i32, IppError> {
        let mut r = self.request(op::PRINT_JOB);
        r.op_attr("job-name", Value::text(tag::NAME, name));
        r.op_attr("document-format", Value::text(tag::MIME, format));
        let answer = self.send_doc(&r, document).await?.check()?;
        answer
            .get("job-id")
            .and_then(Value::as_int)
            .ok_or(IppError::Malformed("no job-id in the answer"))
    }

    /// Prints `document` (of MIME type `format`) as job `name`; returns the job id.
    pub async fn print_job(
        &self,
        name: &str,
        format: &str,
        document: &[u8],
    ) -> Result<i32, IppError> {
        self.print(name, format, Document::Bytes(document)).await
    }

    pub async fn job_state(&self, job_id: i32) -> Result<(JobState, Vec<String>), IppError> {
        let mut r = self.request(op::GET_JOB_ATTRIBUTES);
        r.op_attr("job-id", Value::int(tag::INTEGER, job_id));
        r.attr(
            tag::OPERATION,
            "requested-attributes",
            vec![
                Value::text(tag::KEYWORD, "job-state"),
                Value::text(tag::KEYWORD, "job-state-reasons"),
            ],
        );
        let answer = self.send(&r, &[]).await?.check()?;
        let state = answer
            .get("job-state")
            .and_then(Value::as_int)
            .map(JobState::from_enum)
            .ok_or(IppError::Malformed("no job-state in the answer"))?;
        let reasons = answer
            .values("job-state-reasons")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        Ok((state, reasons))
    }

    pub async fn printer_status(&self) -> Result<PrinterStatus, IppError> {
        let mut r = self.request(op::GET_PRINTER_ATTRIBUTES);
        r.attr(
            tag::OPERATION,
            "requested-attributes",
            vec![
                Value::text(tag::KEYWORD, "printer-state"),
                Value::text(tag::KEYWORD, "printer-state-reasons"),
                Value::text(tag::KEYWORD, "printer-is-accepting-jobs"),
            ],
        );
        let answer = self.send(&r, &[]).await?.check()?;
        Ok(PrinterStatus {
            state: answer
                .get("printer-state")
                .and_then(Value::as_int)
                .ok_or(IppError::Malformed("no printer-state in the answer"))?,
            reasons: answer
                .values("printer-state-reasons")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            accepting: answer
                .get("printer-is-accepting-jobs")
                .map(|v| v.bytes.first() == Some(&1))
                .unwrap_or(true),
        })
    }

    /// This client's jobs at the printer named `name` (finished ones too, as long as
    /// the printer remembers them), with their states.
    pub async fn find_jobs(&self, name: &str) -> Result<Vec<(i32, JobState)>, IppError> {
        let mut r = self.request(op::GET_JOBS);
        r.op_attr("which-jobs", Value::text(tag::KEYWORD, "all"));
        r.op_attr(
            "my-jobs",
            Value {
                tag: tag::BOOLEAN,
                bytes: vec![1],
            },
        );
        r.attr(
            tag::OPERATION,
            "requested-attributes",
            vec![
                Value::text(tag::KEYWORD, "job-id"),
                Value::text(tag::KEYWORD, "job-name"),
                Value::text(tag::KEYWORD, "job-state"),
            ],
        );
        let answer = self.send(&r, &[]).await?.check()?;
        let mut out = Vec::new();
        for job in answer.groups(tag::JOB) {
            let get = |n: &str| job.iter().find(|a| a.1 == n).and_then(|a| a.2.first());
            let (Some(id), Some(state)) = (
                get("job-id").and_then(Value::as_int),
                get("job-state").and_then(Value::as_int),
            ) else {
                continue;
            };
            if get("job-name").and_then(|v| v.as_str()) == Some(name) {
                out.push((id, JobState::from_enum(state)));
            }
        }
        Ok(out)
    }

    pub async fn cancel_job(&self, job_id: i32) -> Result<(), IppError> {
        let mut r = self.request(op::CANCEL_JOB);
        r.op_attr("job-id", Value::int(tag::INTEGER, job_id));
        self.send(&r, &[]).await?.check().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let u = PrinterUri::parse("ipp://127.0.0.1:631/printers/PDF").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 631);
        assert_eq!(u.path, "/printers/PDF");
        assert_eq!(
            PrinterUri::parse("http://lab-printer/ipp/print").unwrap(),
            PrinterUri {
                host: "lab-printer".into(),
                port: 631,
                path: "/ipp/print".into()
            }
        );
        for bad in [
            "lpd://x/y",
            "ipp://",
            "ipp://host",
            "ipp://host:99999/p",
            "ipp://ho st/p",
            "ipp://host/p q",
        ] {
            assert!(PrinterUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_encodes_as_rfc_8010_says() {
        let r = Request::new(op::PRINT_JOB, 7, "ipp://h:631/printers/P");
        let b = r.encode();
        assert_eq!(&b[..8], &[1, 1, 0, 2, 0, 0, 0, 7]);
        assert_eq!(b[8], tag::OPERATION);
        assert_eq!(b[9], tag::CHARSET);
        assert_eq!(&b[10..12], &[0, 18]);
        assert_eq!(&b[12..30], b"attributes-charset");
        assert_eq!(&b[30..32], &[0, 5]);
        assert_eq!(&b[32..37], b"utf-8");
        assert_eq!(*b.last().unwrap(), tag::END);
        // A value longer than a field can say is cut to what its length says.
        let mut r = Request::new(op::PRINT_JOB, 1, "ipp://h/p");
        r.op_attr("job-name", Value::text(tag::NAME, &"x".repeat(70_000)));
        let parsed = Response::parse(&r.encode()).unwrap();
        assert_eq!(parsed.get("job-name").unwrap().bytes.len(), 65_535);
    }

    #[test]
    fn responses_parse_with_additional_values_and_bad_ones_are_errors() {
        let mut r = Request::new(0, 9, "ipp://h/p");
        r.attr(
            tag::JOB,
            "job-state-reasons",
            vec![
                Value::text(tag::KEYWORD, "job-printing"),
                Value::text(tag::KEYWORD, "processing-to-stop-point"),
            ],
        );
        r.attr(tag::JOB, "job-id", vec![Value::int(tag::INTEGER, 42)]);
        let bytes = r.encode();
        let parsed = Response::parse(&bytes).unwrap();
        assert_eq!(parsed.request_id, 9);
        assert_eq!(parsed.get("job-id").and_then(Value::as_int), Some(42));
        assert_eq!(parsed.values("job-state-reasons").len(), 2);
        assert_eq!(parsed.groups(tag::JOB).len(), 1);
        assert_eq!(parsed.groups(tag::OPERATION).len(), 1);
        assert!(parsed.is_success());
        // Every truncation is an error, never a panic.
        for n in 0..bytes.len() {
            assert!(Response::parse(&bytes[..n]).is_err(), "{n}");
        }
        // An attribute before any group.
        assert!(Response::parse(&[1, 1, 0, 0, 0, 0, 0, 1, 0x21, 0, 1, b'a', 0, 0, 3]).is_err());
    }

    #[test]
    fn http_bodies_by_length_chunked_and_after_continue() {
        let (s, b) = parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abc"[..]));
        let (s, b) = parse_http(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
        assert!(
            parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(parse_http(b"garbage").is_err());
        // Endless "100 Continue" is refused, not recursed into; a huge chunk size is
        // an error, not an overflow.
        let endless = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(10_000);
        assert!(parse_http(&endless).is_err());
        assert!(parse_http(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab\r\n"
        )
        .is_err());
    }
}
