// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * registry_fuzzer.c: a C libFuzzer harness for libbpf's SEC() handler registry.
 *
 * The same libbpf calls as fuzz/harness_registry.py (registry mode), decoded
 * from the same bytes, without any oracle: it is the physical limit of
 * fuzzing these four functions, the figure `sec-oracle bench fuzz` puts next
 * to the Python harness.  Built by fuzz/cfuzzer.py (which generates
 * sec_oracle_tables.h from fuzz.decode's stems() and patterns()):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I BUILD_DIR \
 *       fuzz/c/registry_fuzzer.c LIBBPF.so -Wl,-rpath,LIBBPF_DIR -o registry_fuzzer
 *
 * Byte layout: exactly fuzz/decode.py's registry mode (lifecycle=False):
 * a tag byte picks the op (REGISTRY_SLOTS[tag % 16]); Register reads
 * string, enum, enum, opts; Unregister a handler; the lookups a string.
 * Reads past the end give zeros; at most MAX_OPS ops; names are cut at their
 * first NUL and at MAX_NAME bytes.  What the harness runs is
 * fuzz.checks.admissible of that: with SEC_ORACLE_SKIP_EMPTY_SEC (the policy's
 * skip_empty_sec: KB1 halts a sanitizer build on the next lookup) a Register
 * with sec "" and the Unregisters naming it are dropped; with SEC_ORACLE_ANCHOR (KB2 releases) an anchor handler is
 * registered once at start and Unregister(1) is dropped.  After each input
 * its handlers are unregistered in reverse (libbpf's registry is global).
 * Callbacks are never called (no objects), so each is a function returning 0.
 *
 * With -DSEC_ORACLE_TRACE each call is also printed on stderr as one line
 * ("T R sec pt at opts", "T U ref|int", "T P name", "T A name": strings in
 * hex or "-" for NULL, HandleRefs as "r<index among the kept registers>",
 * opts as "-" or "sz,cookie,callback mask,the tail bytes libbpf reads"),
 * which tests/fuzz/test_cfuzzer.py compares with fuzz.decode's ops.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>
#ifdef SEC_ORACLE_TRACE
#include <stdio.h>
#endif

struct piece { const char *s; size_t n; };

#include "sec_oracle_tables.h"	/* STEMS[], PATTERNS[] (struct piece), ANCHOR_SEC */

#define MAX_OPS 64
#define MAX_NAME 4096
#define MAX_TAIL 4096
#define OPTS_STRUCT_SIZE 40
#define REF_LIMIT 0xC0
#define ENUM_DIRECT 64
#define TEXT_CAP 16384	/* longest text before the MAX_NAME cut: 255 * 41 */

enum kind { REG, UNREG, PTYPE, ATYPE };
static const enum kind REGISTRY_SLOTS[16] = {
	REG, PTYPE, REG, PTYPE, UNREG, ATYPE, REG, PTYPE,
	REG, PTYPE, UNREG, ATYPE, REG, PTYPE, UNREG, ATYPE,
};

#define P(x) { x, sizeof(x) - 1 }
static const struct piece SUFFIXES[] = {
	P(""), P("/"), P("+"), P("/x"), P("/a/b"), P(".s"), P(".s/x"), P("//"), P("/+"),
	P("+/"), P("x"), P("/LLC-load-misses"), P("/do_sys_open"), P(".multi"), P(".w"),
	P("?"), P(".s+"), P("/*"),
};
static const struct piece PIECES[] = {
	P("a"), P("b"), P("ab"), P("/"), P("+"), P("."), P("?"), P("s"), P("x/y"), P(".s"),
};
static const char ALPHABET[] = "/+.?asx*";
#define ALPHABET_LEN 8
#define N(a) (sizeof(a) / sizeof((a)[0]))
static const uint64_t SZ_CHOICES[] = {
	0, 1, 7, 8, 12, 15, 16, 17, 23, 24, 31, 32, 39, 40, 41, 48, 64, 4096,
	9223372036854775848ULL /* 2**63 + 40 */, UINT64_MAX,
};
static const int64_t COOKIES[] = {
	0, 1, -1, 7, INT64_MAX, INT64_MIN, 4294967296LL, 0x5EC,
};
static const uint32_t ENUM_EDGES[] = {
	0, 1, 2, 31, 32, 2147483647U, 2147483648U, 4294967295U,
};
static const int32_t WEIRD_INTS[] = { 0, -1, 1, 2, 3, 1000, INT32_MIN, INT32_MAX };

struct consumer { const uint8_t *data; size_t size, pos; };

static uint8_t byte(struct consumer *c)
{
	size_t pos = c->pos++;

	return pos < c->size ? c->data[pos] : 0;
}

/* up to n bytes from the front (fewer at the end of the input); returns how many */
static size_t take(struct consumer *c, size_t n, const uint8_t **out)
{
	size_t have = c->pos < c->size ? c->size - c->pos : 0;

	*out = c->data + (c->pos < c->size ? c->pos : c->size);
	c->pos += n;
	return n < have ? n : have;
}

static uint64_t uint_le(struct consumer *c, size_t size)
{
	const uint8_t *p;
	size_t got = take(c, size, &p), i;
	uint64_t v = 0;

	for (i = 0; i < got; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int64_t sint_le(struct consumer *c, size_t size)
{
	uint64_t v = uint_le(c, size);

	if (size < 8 && (v >> (8 * size - 1)) & 1)
		v |= ~(uint64_t)0 << (8 * size);
	return (int64_t)v;
}

struct text { char buf[TEXT_CAP]; size_t len; };

static void append(struct text *t, const void *s, size_t n)
{
	if (n > TEXT_CAP - t->len)
		n = TEXT_CAP - t->len;
	memmove(t->buf + t->len, s, n);
	t->len += n;
}

/* state of one input's decoding */
struct decoder {
	struct consumer c;
	size_t ops;
	/* patterns registered so far (decode's `seen`); pointers into `names` */
	struct text names[MAX_OPS];
	size_t seen;
	int results[MAX_OPS];	/* each Register's rc; 0 when it was dropped */
	int dropped[MAX_OPS];
	int kept_index[MAX_OPS];	/* index among the registers not dropped */
	size_t registers, kept;
};

static void pick(struct consumer *c, const struct piece *table, size_t n, struct text *t)
{
	const struct piece *p = &table[byte(c) % n];

	append(t, p->s, p->n);
}

static void modify(struct decoder *d, struct text *t, int mod)
{
	struct consumer *c = &d->c;
	const uint8_t *raw;
	size_t n, i, times, len = t->len;
	char ch;

	switch (mod) {
	case 1:
		while (t->len && (t->buf[t->len - 1] == '+' || t->buf[t->len - 1] == '/'))
			t->len--;
		pick(c, SUFFIXES, N(SUFFIXES), t);
		break;
	case 2:
		pick(c, SUFFIXES, N(SUFFIXES), t);
		break;
	case 3:
		t->len = byte(c) % (len + 1);
		break;
	case 4:
		ch = ALPHABET[byte(c) % ALPHABET_LEN];
		append(t, &ch, 1);
		break;
	case 5:
		memmove(t->buf + 1, t->buf, len < TEXT_CAP - 1 ? len : TEXT_CAP - 1);
		t->buf[0] = '?';
		t->len = len < TEXT_CAP - 1 ? len + 1 : TEXT_CAP;
		break;
	case 6:
		for (i = 0; i < len; i++) {
			ch = t->buf[i];
			if (ch >= 'a' && ch <= 'z')
				t->buf[i] = ch - 32;
			else if (ch >= 'A' && ch <= 'Z')
				t->buf[i] = ch + 32;
		}
		break;
	case 7:
		times = 2 + byte(c) % 40;
		for (i = 1; i < times; i++)
			append(t, t->buf, len);
		break;
	case 8:
		n = take(c, byte(c), &raw);
		append(t, raw, n);
		break;
	case 9:
		if (len)
			t->len--;
		break;
	case 10:
		if (len) {
			memmove(t->buf, t->buf + 1, len - 1);
			t->len--;
		}
		break;
	case 11:
		append(t, "/", 1);
		pick(c, STEMS, N(STEMS), t);
		break;
	default:
		break;
	}
}

/* decode's string(): 0 for NULL, else 1 with the name in `t` (NUL-terminated) */
static int string(struct decoder *d, struct text *t)
{
	struct consumer *c = &d->c;
	uint8_t spec = byte(c);
	int base = spec & 15, mod = spec >> 4, i, count;
	const uint8_t *raw;
	size_t n;
	char ch;

	t->len = 0;
	if (base == 0)
		return 0;
	switch (base) {
	case 1: case 2: case 15:
		n = take(c, byte(c), &raw);
		append(t, raw, n);
		break;
	case 3: case 4: case 5: case 14:
		pick(c, STEMS, N(STEMS), t);
		break;
	case 6: case 7:
		pick(c, PATTERNS, N(PATTERNS), t);
		break;
	case 8: case 9: case 10:
		if (d->seen) {
			const struct text *s = &d->names[byte(c) % d->seen];

			append(t, s->buf, s->len);
		} else {
			pick(c, STEMS, N(STEMS), t);
		}
		break;
	case 11:
		break;
	case 12:
		ch = ALPHABET[byte(c) % ALPHABET_LEN];
		append(t, &ch, 1);
		break;
	default: /* 13 */
		count = byte(c) % 5;
		for (i = 0; i < count; i++)
			pick(c, PIECES, N(PIECES), t);
		break;
	}
	modify(d, t, mod);
	n = strnlen(t->buf, t->len);
	t->len = n < MAX_NAME ? n : MAX_NAME;
	t->buf[t->len < TEXT_CAP ? t->len : TEXT_CAP - 1] = '\0';
	return 1;
}

static uint32_t enum_value(struct consumer *c)
{
	uint8_t b = byte(c);

	if (b < REF_LIMIT)
		return b % ENUM_DIRECT;
	if (b < 0xFF)
		return ENUM_EDGES[(b - REF_LIMIT) % N(ENUM_EDGES)];
	return (uint32_t)uint_le(c, 4);
}

static int setup_fn(struct bpf_program *prog, long cookie) { return 0; }
static int prepare_fn(struct bpf_program *prog, struct bpf_prog_load_opts *opts, long cookie)
{
	return 0;
}
static int attach_fn(const struct bpf_program *prog, long cookie, struct bpf_link **link)
{
	return 0;
}

static uint64_t zero_check_len(uint64_t sz)
{
	uint64_t length = sz - OPTS_STRUCT_SIZE;

	return length < (1ULL << 63) ? length : 0;
}

/* decode's opts(): NULL, or `buf` laid out as libbpf reads it (40 bytes + tail) */
static struct libbpf_prog_handler_opts *opts(struct consumer *c, uint64_t *buf)
{
	uint8_t form = byte(c) & 7, spec;
	struct libbpf_prog_handler_opts *o = (void *)buf;
	uint64_t sz = OPTS_STRUCT_SIZE, needed;
	int64_t cookie;
	int shift, cb[3];
	const uint8_t *raw;
	size_t n, zeros;

	if (form <= 2)
		return NULL;
	spec = byte(c);
	for (shift = 0; shift < 3; shift++) {
		cb[shift] = (spec >> (2 * shift)) & 3;
		if (cb[shift] == 3)
			(void)uint_le(c, 4);	/* the return value: never called here */
	}
	memset(buf, 0, OPTS_STRUCT_SIZE + MAX_TAIL + 8 * 3);
	if (form <= 4) {
		cookie = COOKIES[byte(c) % N(COOKIES)];
	} else if (form <= 6) {
		cookie = COOKIES[byte(c) % N(COOKIES)];
		sz = SZ_CHOICES[byte(c) % N(SZ_CHOICES)];
		spec = byte(c);
		needed = zero_check_len(sz);
		if (needed > MAX_TAIL) {
			sz = OPTS_STRUCT_SIZE;
			needed = 0;
		}
		zeros = needed + 8 * (spec & 3);
		if (zeros && spec >> 2)
			((uint8_t *)buf)[OPTS_STRUCT_SIZE + (spec >> 2) % zeros] = 1 + spec % 255;
	} else {
		sz = uint_le(c, 8);
		cookie = sint_le(c, 8);
		n = take(c, uint_le(c, 2) % (MAX_TAIL + 1), &raw);
		memcpy((uint8_t *)buf + OPTS_STRUCT_SIZE, raw, n);
		if (zero_check_len(sz) > MAX_TAIL)
			sz = OPTS_STRUCT_SIZE + sz % (MAX_TAIL + 1);
	}
	o->sz = sz;
	o->cookie = (long)cookie;
	o->prog_setup_fn = cb[0] ? setup_fn : NULL;
	o->prog_prepare_load_fn = cb[1] ? prepare_fn : NULL;
	o->prog_attach_fn = cb[2] ? attach_fn : NULL;
	return o;
}

/* decode's handler(): the id to unregister; *ref is the Register it names, or -1 */
static int handler(struct decoder *d, long *ref)
{
	uint8_t b = byte(&d->c);

	*ref = -1;
	if (b < REF_LIMIT && d->registers) {
		*ref = b % d->registers;
		return d->results[*ref];
	}
	if (b < 0xFF)
		return WEIRD_INTS[b % N(WEIRD_INTS)];
	return (int)sint_le(&d->c, 4);
}

#ifdef SEC_ORACLE_TRACE
static void trace_hex(const void *p, size_t n)
{
	size_t i;

	if (!n)
		fputs("\"\"", stderr);
	for (i = 0; i < n; i++)
		fprintf(stderr, "%02x", ((const uint8_t *)p)[i]);
}

static void trace_name(int has, const struct text *t)
{
	if (has)
		trace_hex(t->buf, t->len);
	else
		fputs("-", stderr);
}

static void trace_opts(const struct libbpf_prog_handler_opts *o)
{
	if (!o) {
		fputs("-", stderr);
		return;
	}
	fprintf(stderr, "%llu,%lld,%d,", (unsigned long long)o->sz, (long long)o->cookie,
		!!o->prog_setup_fn | !!o->prog_prepare_load_fn << 1 | !!o->prog_attach_fn << 2);
	trace_hex((const uint8_t *)o + OPTS_STRUCT_SIZE, zero_check_len(o->sz));
}
#define TRACE(...) fprintf(stderr, __VA_ARGS__)
#else
#define trace_name(has, t) ((void)0)
#define trace_opts(o) ((void)0)
#define TRACE(...) ((void)0)
#endif

static struct decoder D;
static uint64_t OPTS_BUF[(OPTS_STRUCT_SIZE + MAX_TAIL + 24) / 8 + 1];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	libbpf_set_print(NULL);	/* as the Python harness: no log */
#ifdef SEC_ORACLE_ANCHOR
	if (libbpf_register_prog_handler(ANCHOR_SEC, 0, 0, NULL) != 1)
		abort();
#endif
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct decoder *d = &D;
	struct text name;
	struct libbpf_prog_handler_opts *o;
	enum bpf_prog_type prog_type;
	enum bpf_attach_type attach_type;
	uint32_t pt, at;
	long ref;
	int id, has, rc;

	d->c.data = data;
	d->c.size = size;
	d->c.pos = 0;
	d->ops = d->seen = d->registers = d->kept = 0;
	while (d->c.pos < d->c.size && d->ops < MAX_OPS) {
		d->ops++;
		switch (REGISTRY_SLOTS[byte(&d->c) % 16]) {
		case REG:
			has = string(d, &name);
			pt = enum_value(&d->c);
			at = enum_value(&d->c);
			o = opts(&d->c, OPTS_BUF);
#ifdef SEC_ORACLE_SKIP_EMPTY_SEC
			d->dropped[d->registers] = has && name.len == 0;
#else
			d->dropped[d->registers] = 0;
#endif
			rc = 0;
			if (!d->dropped[d->registers]) {
				d->kept_index[d->registers] = d->kept++;
				TRACE("T R ");
				trace_name(has, &name);
				TRACE(" %u %u ", pt, at);
				trace_opts(o);
				TRACE("\n");
				rc = libbpf_register_prog_handler(has ? name.buf : NULL,
								  (enum bpf_prog_type)pt,
								  (enum bpf_attach_type)at, o);
			}
			d->results[d->registers++] = rc;
			if (has)
				d->names[d->seen++] = name;
			break;
		case UNREG:
			id = handler(d, &ref);
			if (ref >= 0 && d->dropped[ref])
				break;
#ifdef SEC_ORACLE_ANCHOR
			if (ref < 0 && id == 1)
				break;
#endif
			if (ref >= 0)
				TRACE("T U r%d\n", d->kept_index[ref]);
			else
				TRACE("T U %d\n", id);
			libbpf_unregister_prog_handler(id);
			break;
		case PTYPE:
			has = string(d, &name);
			TRACE("T P ");
			trace_name(has, &name);
			TRACE("\n");
			libbpf_prog_type_by_name(has ? name.buf : NULL, &prog_type, &attach_type);
			break;
		case ATYPE:
			has = string(d, &name);
			TRACE("T A ");
			trace_name(has, &name);
			TRACE("\n");
			libbpf_attach_type_by_name(has ? name.buf : NULL, &attach_type);
			break;
		}
	}
	while (d->registers) {	/* leave the registry as it was */
		rc = d->results[--d->registers];
		if (rc > 0)
			libbpf_unregister_prog_handler(rc);
	}
	return 0;
}
