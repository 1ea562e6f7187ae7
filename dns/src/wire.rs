//! From request bytes to reply bytes: parse with hickory-proto, decide with the [`NameTable`],
//! write the reply by hand into a reused buffer (no allocation per answered query once warm).
//!
//! Replies echo the question as asked (case kept), point every answer's owner at it
//! (compression pointer to offset 12), and fit the transport's size: 512 bytes over UDP without
//! EDNS, the client's EDNS size capped by ours with it, 65535 over TCP. Records that do not fit
//! are left out and TC is set, so a client retries over TCP; the ones that fit stay in (resolvers
//! that ignore TC still get addresses).

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use crate::table::{Lookup, NameTable};

const HEADER_LEN: usize = 12;
/// Owner name of every answer: a pointer to the question name, which starts right after the header.
const QNAME_POINTER: [u8; 2] = [0xC0, 0x0C];
/// Root name, type OPT, class (payload size), TTL (ext rcode, version, flags), empty RDATA.
const OPT_LEN: usize = 11;
/// The UDP size without EDNS (RFC 1035).
pub(crate) const CLASSIC_UDP_SIZE: u16 = 512;
pub(crate) const MAX_TCP_SIZE: usize = 65_535;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The reply is in [`Responder::reply`].
    Reply,
    /// Not ours: relay the request upstream.
    Forward,
    /// Not worth an answer (a response, or too short to carry an id).
    Drop,
}

/// Per-worker state: the output buffer, scratch for shuffling, a fast RNG.
pub(crate) struct Responder {
    out: Vec<u8>,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    rng: SmallRng,
    /// Our EDNS UDP size: what we advertise and the most we send over UDP.
    max_udp_payload: u16,
}

/// What a reply needs of a parsed request.
struct RequestInfo<'m> {
    id: u16,
    op_code: u8,
    recursion_desired: bool,
    checking_disabled: bool,
    query: Option<&'m Query>,
    /// The client's EDNS UDP size, if it sent an OPT record.
    edns_payload: Option<u16>,
}

/// Header flags and counts of a reply being written.
struct ReplyHeader {
    authoritative: bool,
    truncated: bool,
    rcode: u16,
    answers: u16,
}

impl Responder {
    pub(crate) fn new(max_udp_payload: u16) -> Self {
        Self {
            out: Vec::with_capacity(1024),
            v4: Vec::new(),
            v6: Vec::new(),
            rng: SmallRng::from_rng(&mut rand::rng()),
            max_udp_payload: max_udp_payload.max(CLASSIC_UDP_SIZE),
        }
    }

    #[cfg(test)]
    pub(crate) fn with_seed(max_udp_payload: u16, seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            ..Self::new(max_udp_payload)
        }
    }

    /// The reply written by the last [`Responder::respond`] that returned [`Outcome::Reply`].
    pub(crate) fn reply(&self) -> &[u8] {
        &self.out
    }

    /// Answers `request` from `table`'s view of `network_id`, or says to forward or drop it.
    pub(crate) fn respond(
        &mut self,
        table: &NameTable,
        network_id: &str,
        request: &[u8],
        transport: Transport,
    ) -> Outcome {
        let Ok(message) = Message::from_vec(request) else {
            return self.header_only(request, ResponseCode::FormErr);
        };
        if message.metadata.message_type != MessageType::Query {
            return Outcome::Drop;
        }
        let info = RequestInfo::of(&message, message.queries.first());
        if message.metadata.op_code != OpCode::Query {
            self.write_error(&info, ResponseCode::NotImp);
            return Outcome::Reply;
        }
        if message.queries.len() != 1 {
            let info = RequestInfo {
                query: None,
                ..info
            };
            self.write_error(&info, ResponseCode::FormErr);
            return Outcome::Reply;
        }
        if message.edns.as_ref().is_some_and(|e| e.version() > 0) {
            self.write_error(&info, ResponseCode::BADVERS);
            return Outcome::Reply;
        }
        let query = &message.queries[0];

        let mut text = [0u8; 256];
        let Some(qname) = presentation_name(query, &mut text) else {
            // A label with a dot or a non-printable byte: no internal name looks like that.
            return Outcome::Forward;
        };
        let lookup = table.lookup(network_id, qname, query.query_type(), query.query_class());
        let limit = self.limit(&info, transport);
        let (rcode, authoritative) = match lookup {
            Lookup::Forward => return Outcome::Forward,
            Lookup::Addresses(_) | Lookup::Ptr(_) | Lookup::NoData => (ResponseCode::NoError, true),
            Lookup::NxDomain => (ResponseCode::NXDomain, true),
            Lookup::Refused => (ResponseCode::Refused, false),
        };
        let mut header = ReplyHeader {
            authoritative,
            truncated: false,
            rcode: rcode.into(),
            answers: 0,
        };
        write_start(&mut self.out, &info);
        let room = limit.saturating_sub(if info.edns_payload.is_some() {
            OPT_LEN
        } else {
            0
        });
        match lookup {
            Lookup::Addresses(addrs) => {
                self.v4.clear();
                self.v4.extend_from_slice(addrs.v4);
                self.v4.shuffle(&mut self.rng);
                self.v6.clear();
                self.v6.extend_from_slice(addrs.v6);
                self.v6.shuffle(&mut self.rng);
                let ttl = addrs.ttl.to_be_bytes();
                for addr in &self.v4 {
                    if !push_record(
                        &mut self.out,
                        room,
                        RecordType::A,
                        ttl,
                        &addr.octets(),
                        &mut header,
                    ) {
                        break;
                    }
                }
                for addr in &self.v6 {
                    if !push_record(
                        &mut self.out,
                        room,
                        RecordType::AAAA,
                        ttl,
                        &addr.octets(),
                        &mut header,
                    ) {
                        break;
                    }
                }
            }
            Lookup::Ptr(ptr) => {
                push_record(
                    &mut self.out,
                    room,
                    RecordType::PTR,
                    ptr.ttl.to_be_bytes(),
                    ptr.wire,
                    &mut header,
                );
            }
            _ => {}
        }
        write_end(&mut self.out, &info, &header, self.max_udp_payload);
        Outcome::Reply
    }

    /// The SERVFAIL sent when no upstream answered. `None` if the request cannot get a reply.
    pub(crate) fn servfail(&mut self, request: &[u8]) -> Option<&[u8]> {
        self.error_reply(request, ResponseCode::ServFail)
    }

    /// The REFUSED sent when a query may not be relayed (not a task's, over its rate).
    pub(crate) fn refused(&mut self, request: &[u8]) -> Option<&[u8]> {
        self.error_reply(request, ResponseCode::Refused)
    }

    fn error_reply(&mut self, request: &[u8], code: ResponseCode) -> Option<&[u8]> {
        let message = Message::from_vec(request).ok()?;
        let info = RequestInfo::of(&message, message.queries.first());
        self.write_error(&info, code);
        Some(&self.out)
    }

    fn limit(&self, info: &RequestInfo<'_>, transport: Transport) -> usize {
        match transport {
            Transport::Tcp => MAX_TCP_SIZE,
            Transport::Udp => match info.edns_payload {
                Some(size) => usize::from(size.clamp(CLASSIC_UDP_SIZE, self.max_udp_payload)),
                None => usize::from(CLASSIC_UDP_SIZE),
            },
        }
    }

    fn write_error(&mut self, info: &RequestInfo<'_>, rcode: ResponseCode) {
        // Error replies are small: the question and an OPT always fit in 512 bytes.
        let header = ReplyHeader {
            authoritative: false,
            truncated: false,
            rcode: rcode.into(),
            answers: 0,
        };
        write_start(&mut self.out, info);
        write_end(&mut self.out, info, &header, self.max_udp_payload);
    }

    /// A reply with only a header, for requests hickory-proto could not parse.
    fn header_only(&mut self, request: &[u8], rcode: ResponseCode) -> Outcome {
        if request.len() < HEADER_LEN || request[2] & 0x80 != 0 {
            return Outcome::Drop;
        }
        let info = RequestInfo {
            id: u16::from_be_bytes([request[0], request[1]]),
            op_code: (request[2] >> 3) & 0x0F,
            recursion_desired: request[2] & 0x01 != 0,
            checking_disabled: false,
            query: None,
            edns_payload: None,
        };
        self.write_error(&info, rcode);
        Outcome::Reply
    }
}

impl<'m> RequestInfo<'m> {
    fn of(message: &Message, query: Option<&'m Query>) -> Self {
        Self {
            id: message.metadata.id,
            op_code: u8::from(message.metadata.op_code),
            recursion_desired: message.metadata.recursion_desired,
            checking_disabled: message.metadata.checking_disabled,
            query,
            edns_payload: message
                .edns
                .as_ref()
                .map(hickory_proto::op::Edns::max_payload),
        }
    }
}

/// The question name in presentation form without trailing dot, if every label is printable
/// ASCII without dots (anything else cannot be an internal name).
fn presentation_name<'b>(query: &Query, buf: &'b mut [u8; 256]) -> Option<&'b str> {
    let mut len = 0;
    for label in query.name() {
        if label.iter().any(|&b| b == b'.' || !b.is_ascii_graphic()) {
            return None;
        }
        if len > 0 {
            *buf.get_mut(len)? = b'.';
            len += 1;
        }
        buf.get_mut(len..len + label.len())?.copy_from_slice(label);
        len += label.len();
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// Header placeholder and the question.
fn write_start(out: &mut Vec<u8>, info: &RequestInfo<'_>) {
    out.clear();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Some(query) = info.query {
        for label in query.name() {
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
        out.push(0);
        out.extend_from_slice(&u16::from(query.query_type()).to_be_bytes());
        out.extend_from_slice(&u16::from(query.query_class()).to_be_bytes());
    }
}

/// Appends one answer if it fits in `room`; otherwise marks the reply truncated.
fn push_record(
    out: &mut Vec<u8>,
    room: usize,
    rtype: RecordType,
    ttl: [u8; 4],
    rdata: &[u8],
    header: &mut ReplyHeader,
) -> bool {
    if out.len() + 12 + rdata.len() > room {
        header.truncated = true;
        return false;
    }
    out.extend_from_slice(&QNAME_POINTER);
    out.extend_from_slice(&u16::from(rtype).to_be_bytes());
    out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
    out.extend_from_slice(&ttl);
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    header.answers += 1;
    true
}

/// The OPT record (if the client sent one) and the final header.
fn write_end(
    out: &mut Vec<u8>,
    info: &RequestInfo<'_>,
    header: &ReplyHeader,
    advertised_payload: u16,
) {
    let mut additionals = 0u16;
    if info.edns_payload.is_some() {
        additionals = 1;
        out.push(0); // root
        out.extend_from_slice(&u16::from(RecordType::OPT).to_be_bytes());
        out.extend_from_slice(&advertised_payload.to_be_bytes());
        out.push((header.rcode >> 4) as u8); // extended rcode (upper 8 bits)
        out.extend_from_slice(&[0, 0, 0]); // version 0, no flags
        out.extend_from_slice(&[0, 0]); // no options
    }
    let flags_hi = 0x80 // QR
        | ((info.op_code & 0x0F) << 3)
        | if header.authoritative { 0x04 } else { 0 }
        | if header.truncated { 0x02 } else { 0 }
        | u8::from(info.recursion_desired);
    let flags_lo = 0x80 // RA: we relay everything that is not ours
        | if info.checking_disabled { 0x10 } else { 0 }
        | (header.rcode & 0x0F) as u8;
    let questions = u16::from(info.query.is_some());
    let mut head = [0u8; HEADER_LEN];
    head[0..2].copy_from_slice(&info.id.to_be_bytes());
    head[2] = flags_hi;
    head[3] = flags_lo;
    head[4..6].copy_from_slice(&questions.to_be_bytes());
    head[6..8].copy_from_slice(&header.answers.to_be_bytes());
    head[10..12].copy_from_slice(&additionals.to_be_bytes());
    out[..HEADER_LEN].copy_from_slice(&head);
}

/// `reply` (relayed from upstream) as it may go back over UDP to the sender of `request`:
/// unchanged if it fits the size the client announced (512 bytes without EDNS, never more
/// than ours), else cut to its header and question with TC set, so that the client asks
/// again over TCP. An upstream's large answer is never amplified towards a task.
pub(crate) fn fit_udp(request: &[u8], reply: Vec<u8>, max_udp_payload: u16) -> Vec<u8> {
    let asked = Message::from_vec(request)
        .ok()
        .and_then(|m| m.edns.as_ref().map(hickory_proto::op::Edns::max_payload))
        .unwrap_or(512)
        .clamp(512, max_udp_payload.max(512));
    if reply.len() <= usize::from(asked) {
        return reply;
    }
    let Some(end) = crate::upstream::question_end(&reply) else {
        return reply[..12.min(reply.len())].to_vec();
    };
    let mut cut = reply[..end].to_vec();
    cut[2] |= 0x02; // TC
    cut[6..12].fill(0); // no answer, authority or additional records
    cut
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::*;
    use crate::table::{DEFAULT_TASK_TTL, DEFAULT_VIP_TTL, ServiceRecords, TaskRecord};

    /// Network `n1`: `web` (a VIP, 3 tasks) and `many` (DNS round robin, 100 tasks).
    pub(crate) fn table() -> NameTable {
        let mut b = NameTable::builder();
        b.network("n1", "front", &["10.0.0.0/16".parse().unwrap()])
            .unwrap();
        let vip: IpAddr = "10.0.0.2".parse().unwrap();
        let mut web = ServiceRecords::vip("web", vip);
        let mut many = ServiceRecords::dnsrr("many");
        for i in 0..100u16 {
            let addr = IpAddr::from([10, 0, (i / 250 + 1) as u8, (i % 250 + 1) as u8]);
            many = many.task(TaskRecord::replica(format!("t{i}"), u64::from(i) + 1, addr));
            if i < 3 {
                web = web.task(TaskRecord::replica(format!("w{i}"), u64::from(i) + 1, addr));
            }
        }
        b.service("n1", &web).unwrap();
        b.service("n1", &many).unwrap();
        b.build()
    }

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn ask(r: &mut Responder, t: &NameTable, req: &[u8], transport: Transport) -> Message {
        assert_eq!(r.respond(t, "n1", req, transport), Outcome::Reply);
        Message::from_vec(r.reply()).expect("our reply parses with hickory-proto")
    }

    fn ips(m: &Message) -> Vec<IpAddr> {
        m.answers
            .iter()
            .map(|rec| match &rec.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn answers_a_vip_echoing_the_question_as_asked() {
        let t = table();
        let mut r = Responder::with_seed(1232, 1);
        let m = ask(
            &mut r,
            &t,
            &query("WeB.", RecordType::A, None),
            Transport::Udp,
        );
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(
            m.metadata.authoritative
                && m.metadata.recursion_desired
                && m.metadata.recursion_available
        );
        assert!(!m.metadata.truncation);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.queries[0].name().to_ascii(), "WeB.");
        assert_eq!(ips(&m), vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.answers[0].ttl, DEFAULT_VIP_TTL);
        assert_eq!(m.answers[0].name.to_ascii(), "WeB.");
        assert!(m.edns.is_none(), "no OPT unless the client sent one");
    }

    #[test]
    fn task_answers_are_shuffled_and_complete() {
        let t = table();
        let mut r = Responder::with_seed(1232, 7);
        let req = query("tasks.web", RecordType::A, None);
        let first = ips(&ask(&mut r, &t, &req, Transport::Udp));
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted.len(), 3);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..50 {
            let m = ask(&mut r, &t, &req, Transport::Udp);
            assert_eq!(m.answers[0].ttl, DEFAULT_TASK_TTL);
            let mut got = ips(&m);
            orders.insert(got.clone());
            got.sort();
            assert_eq!(got, sorted);
        }
        assert!(orders.len() > 1, "50 answers in one order: not shuffled");
    }

    #[test]
    fn nxdomain_nodata_and_forward() {
        let t = table();
        let mut r = Responder::with_seed(1232, 1);
        let m = ask(
            &mut r,
            &t,
            &query("nosuch", RecordType::A, None),
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
        let m = ask(
            &mut r,
            &t,
            &query("web", RecordType::AAAA, None),
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let req = query("example.com", RecordType::A, None);
        assert_eq!(r.respond(&t, "n1", &req, Transport::Udp), Outcome::Forward);
    }

    #[test]
    fn ptr_answer_names_the_service() {
        let t = table();
        let mut r = Responder::with_seed(1232, 1);
        let m = ask(
            &mut r,
            &t,
            &query("2.0.0.10.in-addr.arpa.", RecordType::PTR, None),
            Transport::Udp,
        );
        let RData::PTR(ptr) = &m.answers[0].data else {
            panic!("{m:?}")
        };
        assert_eq!(ptr.0.to_ascii(), "web.");
        let m = ask(
            &mut r,
            &t,
            &query("1.1.0.10.in-addr.arpa.", RecordType::PTR, None),
            Transport::Udp,
        );
        let RData::PTR(ptr) = &m.answers[0].data else {
            panic!("{m:?}")
        };
        assert_eq!(ptr.0.to_ascii(), "web.1.w0.front.");
    }

    #[test]
    fn udp_without_edns_truncates_at_512_and_keeps_what_fits() {
        let t = table();
        let mut r = Responder::with_seed(1232, 1);
        let m = ask(
            &mut r,
            &t,
            &query("many", RecordType::A, None),
            Transport::Udp,
        );
        assert!(r.reply().len() <= 512, "{}", r.reply().len());
        assert!(m.metadata.truncation);
        // 512 - header 12 - question (6 + 4) = 490 bytes: 30 A records of 16 bytes.
        assert_eq!(m.answers.len(), 30);
    }

    #[test]
    fn udp_with_edns_respects_the_smaller_of_both_sizes() {
        let t = table();
        let mut r = Responder::with_seed(1232, 1);
        let m = ask(
            &mut r,
            &t,
            &query("many", RecordType::A, Some(4096)),
            Transport::Udp,
        );
        assert!(r.reply().len() <= 1232, "{}", r.reply().len());
        assert!(m.metadata.truncation);
        assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(1232));
        let m = ask(
            &mut r,
            &t,
            &query("many", RecordType::A, Some(600)),
            Transport::Udp,
        );
        assert!(r.reply().len() <= 600 && m.metadata.truncation);
        let mut big = Responder::with_seed(4096, 1);
        let m = ask(
            &mut big,
            &t,
            &query("many", RecordType::A, Some(4096)),
            Transport::Udp,
        );
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
    }

    #[test]
    fn tcp_carries_everything() {
        let t = table();
        let mut r = Responder::with_seed(1232, 1);
        let m = ask(
            &mut r,
            &t,
            &query("many", RecordType::A, None),
            Transport::Tcp,
        );
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
    }

    #[test]
    fn malformed_and_unsupported_requests() {
        let t = table();
        let mut r = Responder::with_seed(1232, 1);
        // Too short for an id: nothing to answer.
        assert_eq!(
            r.respond(&t, "n1", &[1, 2, 3], Transport::Udp),
            Outcome::Drop
        );
        // A header promising a question that is not there: FORMERR with the id.
        let garbage = [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xFF];
        assert_eq!(
            r.respond(&t, "n1", &garbage, Transport::Udp),
            Outcome::Reply
        );
        let m = Message::from_vec(r.reply()).unwrap();
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (0xABCD, ResponseCode::FormErr)
        );
        // Responses are never answered (no loops between servers).
        let mut resp = Message::from_vec(&query("web", RecordType::A, None)).unwrap();
        resp.metadata.message_type = MessageType::Response;
        assert_eq!(
            r.respond(&t, "n1", &resp.to_vec().unwrap(), Transport::Udp),
            Outcome::Drop
        );
        // Other opcodes: NOTIMP.
        let mut notify = Message::from_vec(&query("web", RecordType::SOA, None)).unwrap();
        notify.metadata.op_code = OpCode::Notify;
        let m = ask(&mut r, &t, &notify.to_vec().unwrap(), Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        // Two questions: FORMERR.
        let mut two = Message::from_vec(&query("web", RecordType::A, None)).unwrap();
        two.add_query(Query::query(Name::from_ascii("db").unwrap(), RecordType::A));
        let m = ask(&mut r, &t, &two.to_vec().unwrap(), Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // EDNS version 1: BADVERS, carried in the OPT record.
        let mut v1 = Message::from_vec(&query("web", RecordType::A, Some(1232))).unwrap();
        v1.edns.as_mut().unwrap().set_version(1);
        let m = ask(&mut r, &t, &v1.to_vec().unwrap(), Transport::Udp);
        // 16 is BADVERS in an OPT (hickory-proto names it BADSIG, the TSIG meaning of 16).
        assert_eq!(u16::from(m.metadata.response_code), 16);
    }

    #[test]
    fn servfail_echoes_the_question() {
        let mut r = Responder::with_seed(1232, 1);
        let req = query("example.com", RecordType::MX, Some(1232));
        let m = Message::from_vec(r.servfail(&req).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.queries[0].query_type(), RecordType::MX);
        assert!(m.edns.is_some());
    }

    #[test]
    fn relayed_replies_fit_what_the_client_announced() {
        let reply_to = |request: &[u8], extra: usize| {
            let mut r = request.to_vec();
            r[2] |= 0x80;
            r[7] = 1; // one answer, whatever its bytes
            r.extend(std::iter::repeat_n(0xab, extra));
            r
        };
        let plain = query("example.com.", RecordType::A, None);
        let small = reply_to(&plain, 100);
        assert_eq!(fit_udp(&plain, small.clone(), 1232), small, "fits in 512");
        let big = reply_to(&plain, 600);
        let cut = fit_udp(&plain, big, 1232);
        let m = Message::from_vec(&cut).expect("the cut reply parses");
        assert!(m.metadata.truncation, "TC set");
        assert!(m.answers.is_empty() && m.queries.len() == 1);
        assert!(cut.len() <= 512);
        let edns = query("example.com.", RecordType::A, Some(1232));
        let big = reply_to(&edns, 1000);
        assert_eq!(
            fit_udp(&edns, big.clone(), 1232).len(),
            big.len(),
            "1232 announced"
        );
        let huge = reply_to(&edns, 3000);
        assert!(
            fit_udp(&edns, huge, 1232).len() < 100,
            "over the announced size"
        );
    }
}
