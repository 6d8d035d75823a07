/* Decoding of the monitor's netlink dumps into flat arrays of 64-bit counters.
 *
 * Why C: a pass over 10,000 ports receives about 130,000 netlink messages (50,000 qdiscs,
 * 30,000 links, 50,000 nft counters). Decoding them in Python costs 1 to 4 us each, about
 * 300 ms of CPU a pass, three times the budget of the whole pass (docs/benchmarks.md, section 6);
 * here it costs a few nanoseconds a message. Only the decoding is here: the sockets, the requests
 * and every decision stay in Python (vmqos/drivers/counters.py), which reads the arrays.
 *
 * Each function decodes one chunk (what one recv() returned) of one dump and writes the counters
 * of the objects the caller asked for into `out`, at the slot the caller gave them; it returns
 * (status, messages, checksum): status 1 when the dump ended in this chunk (NLMSG_DONE), 0 when
 * more chunks follow, -errno when the kernel answered with an error. Messages of another
 * sequence number are skipped, as the Python reader did.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <sys/types.h>
#include <sys/socket.h>

#define NLMSG_ERROR_T 2
#define NLMSG_DONE_T 3
#define RTM_NEWQDISC_T 36
#define RTM_NEWTCLASS_T 40
#define RTM_NEWSTATS_T 92
#define NFT_MSG_NEWOBJ_T ((10 << 8) | 18)
#define NLA_TYPE_MASK 0x3FFF
#define TC_H_ROOT 0xFFFFFFFFu

/* qdisc slot: present, handle, parent, kind (16 bytes), bytes, packets, drops, overlimits, backlog, qlen */
#define QDISC_FIELDS 11
/* link slot: present, rx_packets, tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped */
#define LINK_FIELDS 7
/* nft counter slot: present, packets, bytes */
#define NFT_FIELDS 3

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint64_t rdbe64(const uint8_t *p) { return __builtin_bswap64(rd64(p)); }

/* The header checks every decoder shares: walks the chunk and calls `one` for each message of
 * type `want` and sequence `seq`. */
typedef int (*message_fn)(const uint8_t *msg, uint32_t len, void *ctx);

static PyObject *walk(Py_buffer *buf, uint32_t seq, uint16_t want, message_fn one, void *ctx, uint64_t *checksum) {
    const uint8_t *data = buf->buf;
    Py_ssize_t size = buf->len, off = 0;
    long status = 0, messages = 0;
    while (off + 16 <= size) {
        uint32_t len = rd32(data + off);
        uint16_t type = rd16(data + off + 4);
        uint32_t mseq = rd32(data + off + 8);
        if (len < 16 || off + (Py_ssize_t)len > size) {
            PyErr_SetString(PyExc_ValueError, "a truncated netlink message");
            return NULL;
        }
        if (mseq == seq) {
            if (type == NLMSG_DONE_T) { status = 1; break; }
            if (type == NLMSG_ERROR_T) {
                int32_t code = len >= 20 ? (int32_t)rd32(data + off + 16) : 0;
                status = code ? code : 1;
                break;
            }
            if (type == want) {
                messages++;
                if (one(data + off, len, ctx) < 0)
                    return NULL;
            }
        }
        off += (len + 3) & ~3u;
    }
    return Py_BuildValue("(llK)", status, messages, (unsigned long long)*checksum);
}

/* -- qdiscs: the root qdisc of each device that has a slot ------------------------------------- */

struct slots { const int32_t *slot_of; Py_ssize_t nslot_of; uint64_t *out; Py_ssize_t nout; uint64_t sum; };

static int slot_for(struct slots *s, uint32_t ifindex, Py_ssize_t fields, uint64_t **row) {
    if ((Py_ssize_t)ifindex >= s->nslot_of)
        return 0;
    int32_t slot = s->slot_of[ifindex];
    if (slot < 0)
        return 0;
    if ((Py_ssize_t)(slot + 1) * fields > s->nout) {
        PyErr_SetString(PyExc_IndexError, "slot beyond the output array");
        return -1;
    }
    *row = s->out + (Py_ssize_t)slot * fields;
    return 1;
}

/* One qdisc's or class's message (the same tcmsg and attributes) into a slot's QDISC_FIELDS words. */
static void fill_tc(const uint8_t *msg, uint32_t len, uint64_t *row) {
    uint32_t handle = rd32(msg + 16 + 8), parent = rd32(msg + 16 + 12);
    uint64_t kind[2] = {0, 0}, nbytes = 0, packets = 0, qlen = 0, backlog = 0, drops = 0, overlimits = 0;
    uint32_t pos = 16 + 20;
    while (pos + 4 <= len) {
        uint16_t alen = rd16(msg + pos), atype = rd16(msg + pos + 2) & NLA_TYPE_MASK;
        if (alen < 4 || pos + alen > len)
            break;
        if (atype == 1) { /* TCA_KIND */
            uint32_t n = alen - 4 < 16 ? alen - 4 : 16;
            memcpy(kind, msg + pos + 4, n);
        } else if (atype == 7) { /* TCA_STATS2 */
            uint32_t sub = pos + 4, stop = pos + alen;
            while (sub + 4 <= stop) {
                uint16_t slen = rd16(msg + sub), stype = rd16(msg + sub + 2) & NLA_TYPE_MASK;
                if (slen < 4 || sub + slen > stop)
                    break;
                if (stype == 1 && slen >= 4 + 12) { /* TCA_STATS_BASIC: u64 bytes, u32 packets */
                    nbytes = rd64(msg + sub + 4);
                    uint64_t p32 = rd32(msg + sub + 12);
                    if (p32 > packets) packets = p32;
                } else if (stype == 8 && slen >= 4 + 8) { /* TCA_STATS_PKT64 */
                    packets = rd64(msg + sub + 4);
                } else if (stype == 3 && slen >= 4 + 20) { /* TCA_STATS_QUEUE */
                    qlen = rd32(msg + sub + 4);
                    backlog = rd32(msg + sub + 8);
                    drops = rd32(msg + sub + 12);
                    overlimits = rd32(msg + sub + 20);
                }
                sub += (slen + 3) & ~3u;
            }
        }
        pos += (alen + 3) & ~3u;
    }
    row[0] = 1; row[1] = handle; row[2] = parent; row[3] = kind[0]; row[4] = kind[1];
    row[5] = nbytes; row[6] = packets; row[7] = drops; row[8] = overlimits; row[9] = backlog; row[10] = qlen;
}

static int one_qdisc(const uint8_t *msg, uint32_t len, void *ctx) {
    struct slots *s = ctx;
    if (len < 16 + 20)
        return 0;
    uint32_t ifindex = rd32(msg + 16 + 4), parent = rd32(msg + 16 + 12);
    if (parent != TC_H_ROOT)
        return 0;
    uint64_t *row;
    int found = slot_for(s, ifindex, QDISC_FIELDS, &row);
    if (found <= 0)
        return found;
    fill_tc(msg, len, row);
    return 0;
}

/* An answer to one of a batch of gets, at the slot of its sequence number (slot = seq - base):
 * for objects a device has several of (a leaf's qdisc, its class), which an ifindex cannot key. */
struct by_seq { uint32_t base; uint64_t *out; Py_ssize_t nout; };

static int one_tc_by_seq(const uint8_t *msg, uint32_t len, void *ctx) {
    struct by_seq *b = ctx;
    if (len < 16 + 20)
        return 0;
    uint32_t slot = rd32(msg + 8) - b->base;
    if ((Py_ssize_t)(slot + 1) * QDISC_FIELDS > b->nout) {
        PyErr_SetString(PyExc_IndexError, "slot beyond the output array");
        return -1;
    }
    fill_tc(msg, len, b->out + (Py_ssize_t)slot * QDISC_FIELDS);
    return 0;
}

static PyObject *qdisc_roots(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, slot_of, out;
    unsigned int seq;
    if (!PyArg_ParseTuple(args, "y*Iy*w*", &buf, &seq, &slot_of, &out))
        return NULL;
    struct slots s = {slot_of.buf, slot_of.len / 4, out.buf, out.len / 8, 0};
    PyObject *r = walk(&buf, seq, RTM_NEWQDISC_T, one_qdisc, &s, &s.sum);
    PyBuffer_Release(&buf); PyBuffer_Release(&slot_of); PyBuffer_Release(&out);
    return r;
}

/* -- links: rtnl_link_stats64 of each device that has a slot; a checksum of every ifindex ------ */

static int one_link(const uint8_t *msg, uint32_t len, void *ctx) {
    struct slots *s = ctx;
    if (len < 16 + 12)
        return 0;
    uint32_t ifindex = rd32(msg + 16 + 4);
    s->sum += ifindex;
    uint64_t *row;
    int found = slot_for(s, ifindex, LINK_FIELDS, &row);
    if (found <= 0)
        return found;
    uint32_t pos = 16 + 12;
    while (pos + 4 <= len) {
        uint16_t alen = rd16(msg + pos), atype = rd16(msg + pos + 2) & NLA_TYPE_MASK;
        if (alen < 4 || pos + alen > len)
            break;
        if (atype == 1 && alen >= 4 + 64) { /* IFLA_STATS_LINK_64 */
            const uint8_t *st = msg + pos + 4;
            row[0] = 1;
            row[1] = rd64(st); row[2] = rd64(st + 8); row[3] = rd64(st + 16); row[4] = rd64(st + 24);
            row[5] = rd64(st + 48); row[6] = rd64(st + 56);
            return 0;
        }
        pos += (alen + 3) & ~3u;
    }
    row[0] = 1; row[1] = row[2] = row[3] = row[4] = row[5] = row[6] = 0;
    return 0;
}

static PyObject *link_stats(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, slot_of, out;
    unsigned int seq;
    unsigned long long sum;
    if (!PyArg_ParseTuple(args, "y*Iy*w*K", &buf, &seq, &slot_of, &out, &sum))
        return NULL;
    struct slots s = {slot_of.buf, slot_of.len / 4, out.buf, out.len / 8, sum};
    PyObject *r = walk(&buf, seq, RTM_NEWSTATS_T, one_link, &s, &s.sum);
    PyBuffer_Release(&buf); PyBuffer_Release(&slot_of); PyBuffer_Release(&out);
    return r;
}

/* -- nft named counters of one table: by name; unknown names are handed back ------------------ */

struct nft_ctx { const char *table; Py_ssize_t table_len; PyObject *slot_of; PyObject *unknown;
                 uint64_t *out; Py_ssize_t nout; };

static int one_counter(const uint8_t *msg, uint32_t len, void *ctx) {
    struct nft_ctx *c = ctx;
    const uint8_t *name = NULL;
    uint32_t name_len = 0;
    uint64_t nbytes = 0, packets = 0;
    int table_ok = 0;
    uint32_t pos = 16 + 4; /* nfgenmsg */
    while (pos + 4 <= len) {
        uint16_t alen = rd16(msg + pos), atype = rd16(msg + pos + 2) & NLA_TYPE_MASK;
        if (alen < 4 || pos + alen > len)
            break;
        const uint8_t *val = msg + pos + 4;
        uint32_t vlen = alen - 4;
        if (atype == 1) { /* NFTA_OBJ_TABLE, NUL-terminated */
            uint32_t n = strnlen((const char *)val, vlen);
            table_ok = n == (uint32_t)c->table_len && memcmp(val, c->table, n) == 0;
        } else if (atype == 2) { /* NFTA_OBJ_NAME */
            name = val;
            name_len = strnlen((const char *)val, vlen);
        } else if (atype == 4) { /* NFTA_OBJ_DATA: nested counter */
            uint32_t sub = 0;
            while (sub + 4 <= vlen) {
                uint16_t clen = rd16(val + sub), ctype = rd16(val + sub + 2) & NLA_TYPE_MASK;
                if (clen < 4 || sub + clen > vlen)
                    break;
                if (ctype == 1 && clen >= 12) nbytes = rdbe64(val + sub + 4);
                else if (ctype == 2 && clen >= 12) packets = rdbe64(val + sub + 4);
                sub += (clen + 3) & ~3u;
            }
        }
        pos += (alen + 3) & ~3u;
    }
    if (!table_ok || name == NULL || name_len == 0)
        return 0;
    PyObject *key = PyBytes_FromStringAndSize((const char *)name, name_len);
    if (key == NULL)
        return -1;
    PyObject *slot = PyDict_GetItemWithError(c->slot_of, key);
    if (slot == NULL) {
        if (PyErr_Occurred()) { Py_DECREF(key); return -1; }
        PyObject *item = Py_BuildValue("(OKK)", key, (unsigned long long)packets, (unsigned long long)nbytes);
        Py_DECREF(key);
        if (item == NULL)
            return -1;
        int err = PyList_Append(c->unknown, item);
        Py_DECREF(item);
        return err;
    }
    Py_DECREF(key);
    Py_ssize_t i = PyLong_AsSsize_t(slot);
    if (i < 0 || (i + 1) * NFT_FIELDS > c->nout) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_IndexError, "slot beyond the output array");
        return -1;
    }
    uint64_t *row = c->out + i * NFT_FIELDS;
    row[0] = 1; row[1] = packets; row[2] = nbytes;
    return 0;
}

static PyObject *nft_counters(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, out;
    unsigned int seq;
    const char *table;
    Py_ssize_t table_len;
    PyObject *slot_of, *unknown;
    if (!PyArg_ParseTuple(args, "y*Iy#O!O!w*", &buf, &seq, &table, &table_len, &PyDict_Type, &slot_of,
                          &PyList_Type, &unknown, &out))
        return NULL;
    struct nft_ctx c = {table, table_len, slot_of, unknown, out.buf, out.len / 8};
    uint64_t none = 0;
    PyObject *r = walk(&buf, seq, NFT_MSG_NEWOBJ_T, one_counter, &c, &none);
    PyBuffer_Release(&buf); PyBuffer_Release(&out);
    return r;
}


/* -- nft named counters read by name: the answers to a batch of NFT_MSG_GETOBJ requests ------- */

/* The requests of one batch carry the sequence numbers first..last, the last one asks for an
 * acknowledgement: the batch's answers end with the error message of `last` (code 0, or the
 * error of that last request). A counter that no longer exists answers -ENOENT: it is counted in
 * `missing` and skipped, as a dump would not list it; any other error ends the batch with it.
 * Returns -1 with an exception set, else 0 with *status 1 once the last acknowledgement came. */
struct answers { uint32_t first, last; long status, messages, missing; };

/* A get whose object is not there: a counter deleted (ENOENT), a device gone (ENODEV), no such qdisc. */
static int absent(int32_t code) { return code == -ENOENT || code == -ENODEV || code == -EINVAL; }

static int answers_chunk(const uint8_t *data, Py_ssize_t size, struct answers *a, uint16_t want, uint16_t also,
                         message_fn one, void *c) {
    Py_ssize_t off = 0;
    while (off + 16 <= size) {
        uint32_t len = rd32(data + off);
        uint16_t type = rd16(data + off + 4);
        uint32_t mseq = rd32(data + off + 8);
        if (len < 16 || off + (Py_ssize_t)len > size) {
            PyErr_SetString(PyExc_ValueError, "a truncated netlink message");
            return -1;
        }
        if (mseq >= a->first && mseq <= a->last) {
            if (type == NLMSG_ERROR_T) {
                int32_t code = len >= 20 ? (int32_t)rd32(data + off + 16) : 0;
                if (absent(code))
                    a->missing++;
                else if (code) { a->status = code; return 0; }
                if (mseq == a->last) { a->status = 1; return 0; }
            } else if (type == want || type == also) {
                a->messages++;
                if (one(data + off, len, c) < 0)
                    return -1;
            }
        }
        off += (len + 3) & ~3u;
    }
    return 0;
}

static PyObject *nft_answers(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, out;
    struct answers a = {0, 0, 0, 0, 0};
    const char *table;
    Py_ssize_t table_len;
    PyObject *slot_of, *unknown;
    if (!PyArg_ParseTuple(args, "y*IIy#O!O!w*", &buf, &a.first, &a.last, &table, &table_len, &PyDict_Type, &slot_of,
                          &PyList_Type, &unknown, &out))
        return NULL;
    struct nft_ctx c = {table, table_len, slot_of, unknown, out.buf, out.len / 8};
    int err = answers_chunk(buf.buf, buf.len, &a, NFT_MSG_NEWOBJ_T, NFT_MSG_NEWOBJ_T, one_counter, &c);
    PyBuffer_Release(&buf); PyBuffer_Release(&out);
    if (err < 0)
        return NULL;
    return Py_BuildValue("(lll)", a.status, a.messages, a.missing);
}

/* Receives the answers to a batch of gets from the netlink socket `fd` until the last
 * acknowledgement (each answer to a get is one datagram: 10,000 or 20,000 of them a pass at 10,000
 * ports, where a recv() and a call per datagram from Python cost about as much as the kernel's work). */
static int receive(int fd, Py_buffer *buf, struct answers *a, uint16_t want, uint16_t also, message_fn one, void *c) {
    while (a->status == 0) {
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = recv(fd, buf->buf, (size_t)buf->len, 0);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EINTR && PyErr_CheckSignals() == 0)
                continue;
            if (!PyErr_Occurred())
                PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (answers_chunk(buf->buf, n, a, want, also, one, c) < 0)
            return -1;
    }
    return 0;
}

static PyObject *nft_receive(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, out;
    int fd;
    struct answers a = {0, 0, 0, 0, 0};
    const char *table;
    Py_ssize_t table_len;
    PyObject *slot_of, *unknown;
    if (!PyArg_ParseTuple(args, "iw*IIy#O!O!w*", &fd, &buf, &a.first, &a.last, &table, &table_len, &PyDict_Type,
                          &slot_of, &PyList_Type, &unknown, &out))
        return NULL;
    struct nft_ctx c = {table, table_len, slot_of, unknown, out.buf, out.len / 8};
    int err = receive(fd, &buf, &a, NFT_MSG_NEWOBJ_T, NFT_MSG_NEWOBJ_T, one_counter, &c);
    PyBuffer_Release(&buf); PyBuffer_Release(&out);
    if (err < 0)
        return NULL;
    return Py_BuildValue("(lll)", a.status, a.messages, a.missing);
}

/* The root qdisc of each device asked for with one RTM_GETQDISC get each (NLM_F_ECHO): decoded as
 * qdisc_roots does. Linear in the devices, where the dump resumes from the head of the device list
 * once per 32 KiB chunk. */
static PyObject *qdisc_receive(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, slot_of, out;
    int fd;
    struct answers a = {0, 0, 0, 0, 0};
    if (!PyArg_ParseTuple(args, "iw*IIy*w*", &fd, &buf, &a.first, &a.last, &slot_of, &out))
        return NULL;
    struct slots s = {slot_of.buf, slot_of.len / 4, out.buf, out.len / 8, 0};
    int err = receive(fd, &buf, &a, RTM_NEWQDISC_T, RTM_NEWQDISC_T, one_qdisc, &s);
    PyBuffer_Release(&buf); PyBuffer_Release(&slot_of); PyBuffer_Release(&out);
    if (err < 0)
        return NULL;
    return Py_BuildValue("(lll)", a.status, a.messages, a.missing);
}

/* Qdiscs and classes asked for by RTM_GETQDISC / RTM_GETTCLASS gets (NLM_F_ECHO), each at the slot
 * of its sequence number less `base`: a segmenting TBF leaf and its HTB class, whose drops the root
 * does not all count (monitor/leaf_drops.py). */
static PyObject *tc_receive(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, out;
    int fd;
    struct answers a = {0, 0, 0, 0, 0};
    unsigned int base;
    if (!PyArg_ParseTuple(args, "iw*IIIw*", &fd, &buf, &a.first, &a.last, &base, &out))
        return NULL;
    struct by_seq b = {base, out.buf, out.len / 8};
    int err = receive(fd, &buf, &a, RTM_NEWQDISC_T, RTM_NEWTCLASS_T, one_tc_by_seq, &b);
    PyBuffer_Release(&buf); PyBuffer_Release(&out);
    if (err < 0)
        return NULL;
    return Py_BuildValue("(lll)", a.status, a.messages, a.missing);
}

static PyMethodDef methods[] = {
    {"qdisc_roots", qdisc_roots, METH_VARARGS,
     "qdisc_roots(chunk, seq, slot_of, out) -> (status, messages, 0): root qdiscs of the devices with a slot "
     "(slot_of: int32 per ifindex, -1 for none) into out (uint64, QDISC_FIELDS per slot)"},
    {"link_stats", link_stats, METH_VARARGS,
     "link_stats(chunk, seq, slot_of, out, checksum) -> (status, messages, checksum + sum of every ifindex)"},
    {"nft_counters", nft_counters, METH_VARARGS,
     "nft_counters(chunk, seq, table, slot_of, unknown, out) -> (status, messages, 0): named counters of "
     "`table` whose name (bytes) has a slot in the dict slot_of; the others appended to unknown as "
     "(name, packets, bytes)"},
    {"nft_answers", nft_answers, METH_VARARGS,
     "nft_answers(chunk, first_seq, last_seq, table, slot_of, unknown, out) -> (status, counters, missing): "
     "the answers to NFT_MSG_GETOBJ requests of sequence numbers first..last (the last one acknowledged), "
     "decoded as nft_counters does; status 1 when the last request's acknowledgement came"},
    {"nft_receive", nft_receive, METH_VARARGS,
     "nft_receive(fd, buffer, first_seq, last_seq, table, slot_of, unknown, out) -> (status, counters, missing): "
     "nft_answers over every datagram received on the socket fd until the last acknowledgement"},
    {"qdisc_receive", qdisc_receive, METH_VARARGS,
     "qdisc_receive(fd, buffer, first_seq, last_seq, slot_of, out) -> (status, qdiscs, missing): the answers "
     "to RTM_GETQDISC gets of sequence numbers first..last, decoded as qdisc_roots does"},
    {"tc_receive", tc_receive, METH_VARARGS,
     "tc_receive(fd, buffer, first_seq, last_seq, base_seq, out) -> (status, objects, missing): the answers to "
     "RTM_GETQDISC/RTM_GETTCLASS gets of sequence numbers first..last, each into out at slot seq - base_seq "
     "(QDISC_FIELDS words, as qdisc_roots writes them)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_nlstats",
                                    "Decoding of the monitor's netlink dumps into flat arrays (see counters.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__nlstats(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "QDISC_FIELDS", QDISC_FIELDS) < 0 ||
        PyModule_AddIntConstant(m, "LINK_FIELDS", LINK_FIELDS) < 0 ||
        PyModule_AddIntConstant(m, "NFT_FIELDS", NFT_FIELDS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
