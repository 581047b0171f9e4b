//! A small IPP/1.1 client (RFC 8010 encoding, RFC 8011 operations) over plain HTTP:
//! enough to print a document on a CUPS queue and follow the job — Print-Job,
//! Get-Job-Attributes, Get-Printer-Attributes, Cancel-Job. Every answer is parsed
//! within bounds: a printer is outside the lab's trust.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest IPP answer read (attributes only; we never fetch documents).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long one request may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum IppError {
    #[error("printer address {0:?}: use ipp://HOST[:PORT]/PATH or http://HOST[:PORT]/PATH")]
    BadUri(String),
    #[error("cannot reach the printer at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("the printer did not answer in time")]
    Timeout,
    #[error("talking to the printer: {0}")]
    Io(#[from] std::io::Error),
    #[error("the printer answered HTTP {0}")]
    Http(u16),
    #[error("the printer's answer is not IPP: {0}")]
    Malformed(&'static str),
    #[error("the printer refused: {status} ({message})")]
    Status {
        code: u16,
        status: String,
        message: String,
    },
}

/// An IPP printer's address, split for the HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterUri {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl PrinterUri {
    pub fn parse(uri: &str) -> Result<PrinterUri, IppError> {
        let bad = || IppError::BadUri(uri.chars().take(200).collect());
        let (rest, default_port) = if let Some(r) = uri.strip_prefix("ipp://") {
            (r, 631)
        } else if let Some(r) = uri.strip_prefix("http://") {
            (r, 631)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => return Err(bad()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (authority, default_port),
        };
        if host.is_empty()
            || path.len() < 2
            || !path.bytes().all(|b| b.is_ascii_graphic())
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(bad());
        }
        Ok(PrinterUri {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The `printer-uri` attribute's value.
    pub fn ipp_uri(&self) -> String {
        format!("ipp://{}:{}{}", self.host, self.port, self.path)
    }
}

// ------------------------------------------------------------------ encoding

pub mod tag {
    pub const OPERATION: u8 = 0x01;
    pub const JOB: u8 = 0x02;
    pub const END: u8 = 0x03;
    pub const PRINTER: u8 = 0x04;
    pub const UNSUPPORTED: u8 = 0x05;
    pub const INTEGER: u8 = 0x21;
    pub const BOOLEAN: u8 = 0x22;
    pub const ENUM: u8 = 0x23;
    pub const TEXT: u8 = 0x41;
    pub const NAME: u8 = 0x42;
    pub const KEYWORD: u8 = 0x44;
    pub const URI: u8 = 0x45;
    pub const CHARSET: u8 = 0x47;
    pub const LANGUAGE: u8 = 0x48;
    pub const MIME: u8 = 0x49;
}

pub mod op {
    pub const PRINT_JOB: u16 = 0x0002;
    pub const CANCEL_JOB: u16 = 0x0008;
    pub const GET_JOB_ATTRIBUTES: u16 = 0x0009;
    pub const GET_JOBS: u16 = 0x000A;
    pub const GET_PRINTER_ATTRIBUTES: u16 = 0x000B;
}

/// One attribute value as it travels: its value tag and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub tag: u8,
    pub bytes: Vec<u8>,
}

impl Value {
    pub fn text(tag: u8, s: &str) -> Value {
        Value {
            tag,
            bytes: s.as_bytes().to_vec(),
        }
    }
    pub fn int(tag: u8, n: i32) -> Value {
        Value {
            tag,
            bytes: n.to_be_bytes().to_vec(),
        }
    }
    pub fn as_int(&self) -> Option<i32> {
        let b: [u8; 4] = self.bytes.as_slice().try_into().ok()?;
        Some(i32::from_be_bytes(b))
    }
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }
}

/// One attribute: its name and values.
type Attribute = (String, Vec<Value>);

/// A request being built: operation attributes, then optional job attributes.
pub struct Request {
    operation: u16,
    request_id: u32,
    groups: Vec<(u8, Vec<Attribute>)>,
}

impl Request {
    /// A request with the three attributes every operation starts with.
    pub fn new(operation: u16, request_id: u32, printer_uri: &str) -> Request {
        let mut r = Request {
            operation,
            request_id,
            groups: vec![(tag::OPERATION, Vec::new())],
        };
        r.op_attr("attributes-charset", Value::text(tag::CHARSET, "utf-8"));
        r.op_attr(
            "attributes-natural-language",
            Value::text(tag::LANGUAGE, "en"),
        );
        r.op_attr("printer-uri", Value::text(tag::URI, printer_uri));
        r
    }

    pub fn op_attr(&mut self, name: &str, value: Value) -> &mut Request {
        self.attr(tag::OPERATION, name, vec![value])
    }

    pub fn attr(&mut self, group: u8, name: &str, values: Vec<Value>) -> &mut Request {
        match self.groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, attrs)) => attrs.push((name.to_string(), values)),
            None => self.groups.push((group, vec![(name.to_string(), values)])),
        }
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1, 1];
        out.extend_from_slice(&self.operation.to_be_bytes());
        out.extend_from_slice(&self.request_id.to_be_bytes());
        for (group, attrs) in &self.groups {
            out.push(*group);
            for (name, values) in attrs {
                for (i, v) in values.iter().enumerate() {
                    out.push(v.tag);
                    let n: &[u8] = if i == 0 { name.as_bytes() } else { b"" };
                    put_field(&mut out, n);
                    put_field(&mut out, &v.bytes);
                }
            }
        }
        out.push(tag::END);
        out
    }
}

/// A length-prefixed field; anything past 65,535 bytes (more than any attribute we
/// send) is cut, so the length always matches the bytes.
fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(bytes.get(..n).unwrap_or_default());
}

/// A parsed IPP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub request_id: u32,
    /// `(group tag, name, values)` in the order they came.
    pub attributes: Vec<(u8, String, Vec<Value>)>,
    /// Where each group starts in `attributes` (two jobs are two groups with the
    /// same tag).
    pub group_starts: Vec<usize>,
}

impl Response {
    pub fn parse(bytes: &[u8]) -> Result<Response, IppError> {
        let mut r = Reader { bytes, at: 0 };
        let _version = r.take(2)?;
        let status = r.u16()?;
        let request_id = r.u32()?;
        let mut attributes: Vec<(u8, String, Vec<Value>)> = Vec::new();
        let mut group_starts = Vec::new();
        let mut group = None;
        loop {
            let t = r.u8()?;
            if t == tag::END {
                break;
            }
            if t < 0x10 {
                group = Some(t);
                group_starts.push(attributes.len());
                continue;
            }
            let g = group.ok_or(IppError::Malformed("attribute outside a group"))?;
            let name_len = usize::from(r.u16()?);
            let name = r.take(name_len)?;
            let value_len = usize::from(r.u16()?);
            let value = Value {
                tag: t,
                bytes: r.take(value_len)?.to_vec(),
            };
            if name.is_empty() {
                // An additional value of the previous attribute.
                match attributes.last_mut() {
                    Some((_, _, values)) => values.push(value),
                    None => return Err(IppError::Malformed("a value without a name")),
                }
            } else {
                let name = String::from_utf8_lossy(name).into_owned();
                attributes.push((g, name, vec![value]));
            }
        }
        Ok(Response {
            status,
            request_id,
            attributes,
            group_starts,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(_, n, _)| n == name)
            .and_then(|(_, _, v)| v.first())
    }

    pub fn values(&self, name: &str) -> Vec<&Value> {
        self.attributes
            .iter()
            .filter(|(_, n, _)| n == name)
            .flat_map(|(_, _, v)| v.iter())
            .collect()
    }

    /// The groups with tag `tag`, each as its attributes.
    pub fn groups(&self, tag: u8) -> Vec<&[(u8, String, Vec<Value>)]> {
        let mut out = Vec::new();
        for (i, start) in self.group_starts.iter().enumerate() {
            let end = self
                .group_starts
                .get(i + 1)
                .copied()
                .unwrap_or(self.attributes.len());
            if let Some(g) = self.attributes.get(*start..end) {
                if g.first().map(|a| a.0) == Some(tag) {
                    out.push(g);
                }
            }
        }
        out
    }

    pub fn is_success(&self) -> bool {
        self.status < 0x0100
    }

    /// `Ok(self)` for a successful status, else the status and the printer's message.
    pub fn check(self) -> Result<Response, IppError> {
        if self.is_success() {
            return Ok(self);
        }
        Err(IppError::Status {
            code: self.status,
            status: status_name(self.status),
            message: self
                .get("status-message")
                .and_then(|v| v.as_str())
                .unwrap_or("no message")
                .chars()
                .take(200)
                .collect(),
        })
    }
}

/// `client-error-not-found`: the printer does not know the job (or the queue).
pub const NOT_FOUND: u16 = 0x0406;

pub fn status_name(status: u16) -> String {
    let name = match status {
        0x0400 => "client-error-bad-request",
        0x0401 => "client-error-forbidden",
        0x0402 => "client-error-not-authenticated",
        0x0403 => "client-error-not-authorized",
        0x0404 => "client-error-not-possible",
        0x0406 => "client-error-not-found",
        0x040A => "client-error-document-format-not-supported",
        0x0500 => "server-error-internal-error",
        0x0506 => "server-error-not-accepting-jobs",
        0x0507 => "server-error-busy",
        _ => return format!("IPP status 0x{status:04x}"),
    };
    name.to_string()
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IppError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(IppError::Malformed("length overflow"))?;
        let out = self
            .bytes
            .get(self.at..end)
            .ok_or(IppError::Malformed("truncated"))?;
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, IppError> {
        self.take(1)?
            .first()
            .copied()
            .ok_or(IppError::Malformed("truncated"))
    }
    fn u16(&mut self) -> Result<u16, IppError> {
        let b: [u8; 2] = self
            .take(2)?
            .try_into()
            .map_err(|_| IppError::Malformed("truncated"))?;
        Ok(u16::from_be_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, IppError> {
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| IppError::Malformed("truncated"))?;
        Ok(u32::from_be_bytes(b))
    }
}

// ------------------------------------------------------------------ HTTP transport

/// Most informational (1xx) answers skipped before the real one.
const MAX_INTERIM_ANSWERS: usize = 4;

/// Splits an HTTP/1.1 response into its status and body (Content-Length, chunked, or
/// to the end of the connection).
pub fn parse_http(raw: &[u8]) -> Result<(u16, Vec<u8>), IppError> {
    let mut raw = raw;
    let mut interim = 0;
    loop {
        let head_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or(IppError::Malformed("no HTTP header"))?;
        let status = http_status(raw.get(..head_end).unwrap_or_default())?;
        if !(100..200).contains(&status) {
            return parse_http_answer(raw);
        }
        // "100 Continue" and the like come before the real answer.
        interim += 1;
        if interim > MAX_INTERIM_ANSWERS {
            return Err(IppError::Malformed("too many interim answers"));
        }
        raw = raw.get(head_end + 4..).unwrap_or_default();
    }
}

fn http_status(head: &[u8]) -> Result<u16, IppError> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(IppError::Malformed("no HTTP status"))
}

fn parse_http_answer(raw: &[u8]) -> Result<(u16, Vec<u8>), IppError> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(IppError::Malformed("no HTTP header"))?;
    let head = String::from_utf8_lossy(raw.get(..head_end).unwrap_or_default());
    let body = raw.get(head_end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(IppError::Malformed("no HTTP status"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        let mut r = Reader { bytes: body, at: 0 };
        loop {
            let line_end = r
                .bytes
                .get(r.at..)
                .and_then(|b| b.windows(2).position(|w| w == b"\r\n"))
                .ok_or(IppError::Malformed("bad chunk"))?;
            let line = String::from_utf8_lossy(r.take(line_end)?).into_owned();
            r.take(2)?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| IppError::Malformed("bad chunk size"))?;
            if size == 0 {
                break;
            }
            if size > MAX_RESPONSE_BYTES.saturating_sub(out.len()) {
                return Err(IppError::Malformed("answer too large"));
            }
            out.extend_from_slice(r.take(size)?);
            r.take(2)?;
        }
        out
    } else if let Some(n) = length {
        body.get(..n)
            .ok_or(IppError::Malformed("body shorter than its length"))?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

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
