//! IPP/1.1 messages (RFC 8010 encoding) and the HTTP answers they come in, parsed
//! within bounds: a printer is outside the lab's trust. The lab's client (`roles/lab`)
//! sends them; the fuzz target `ipp` parses anything as a printer's answer.

use std::time::Duration;

use thiserror::Error;

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
