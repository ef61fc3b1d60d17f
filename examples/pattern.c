/* combiner pattern: pictures of what every factorization attends to.
 *
 *   combiner-pattern DIR        (DIR must exist; `make pictures` uses docs/pictures)
 *
 * For FIXED, AXIAL, MIXTURE, LOGSPARSE and DENSE, causal and bidirectional,
 * at L = 48 with block 8, it writes into DIR:
 *   support_<kind>_<mode>.png  combiner_support_map(): how query i (row i)
 *                              reaches position j (column j): directly
 *                              (black), through the abstraction of a region
 *                              (one colour per region, lighter for the
 *                              mirrored side) or not at all (white). MIXTURE
 *                              shows both plans side by side; AXIAL marks,
 *                              darker, the cell whose summary stands for a row.
 *   matrix_<kind>_<mode>.png   combiner_attention_matrix() for random q and k:
 *                              the weight of v_j in out_i on a log scale
 *                              (viridis, 1e-4 to 1); white: not attended.
 *   overview_support.png, overview_matrix.png
 *                              every kind side by side, causal on top,
 *                              bidirectional below;
 * and AXIAL and MIXTURE bidirectional at L = 45 (a short last row), *_L45.png.
 * The inputs come from a fixed LCG: the files are the same on every run.
 *
 * The PNG encoder is a page of C with no dependency: one zlib stream of a
 * single fixed-Huffman deflate block with greedy LZ77 matching. Every file
 * is read back from disk and checked before the program goes on (signature,
 * chunk CRC-32s, IHDR, inflate, Adler-32, the pixels themselves), so a zero
 * exit status means every picture was written and decodes to what was drawn. */
#define COMBINER_IMPLEMENTATION
#include "combiner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  SEQ_LEN = 48,   /* positions of the main pictures */
  SHORT_LEN = 45, /* the short-last-row variant: not a multiple of BLOCK */
  BLOCK = 8,
  HEAD_DIM = 16,
  CELL = 8,       /* pixels per cell in the single pictures */
  OVERVIEW_CELL = 6,
  PAD = 16,       /* outer margin */
  GAP = 28        /* between panels */
};
#define INPUT_GAIN 1.5  /* q, k uniform in [-gain, gain]: logits of std ~0.75 */
#define LOG_DECADES 4   /* matrix colours: weights 10^-4 (and below) .. 1; at most 6 */

/* ------------------------------------------------------------------------ */
/* Images: RGB pixels, rectangles and a 5x7 font                            */
/* ------------------------------------------------------------------------ */

typedef struct rgb { unsigned char r, g, b; } rgb;
typedef struct image { int w, h; unsigned char *px; } image;   /* [h][w][3] */

static const rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0};
static const rgb INK = {34, 34, 34}, GRID = {150, 150, 150}, FRAME = {90, 90, 90};

static int image_init(image *img, int w, int h) {
  img->w = w;
  img->h = h;
  img->px = (unsigned char *)malloc((size_t)w * (size_t)h * 3);
  if (!img->px) {
    fprintf(stderr, "combiner-pattern: out of memory (%d x %d image)\n", w, h);
    return -1;
  }
  memset(img->px, 255, (size_t)w * (size_t)h * 3);
  return 0;
}

static void image_free(image *img) {
  free(img->px);
  img->px = NULL;
}

static void fill_rect(image *img, int x, int y, int w, int h, rgb c) {
  int i, j;
  for (j = y < 0 ? 0 : y; j < y + h && j < img->h; ++j)
    for (i = x < 0 ? 0 : x; i < x + w && i < img->w; ++i) {
      unsigned char *p = img->px + ((size_t)j * (size_t)img->w + (size_t)i) * 3;
      p[0] = c.r; p[1] = c.g; p[2] = c.b;
    }
}

static const char FONT_CHARS[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;=()-/'";
static const unsigned char FONT[][7] = {   /* rows top to bottom, bit 4 = left */
  {14,17,17,31,17,17,17}, {30,17,17,30,17,17,30}, {14,17,16,16,16,17,14}, /* A B C */
  {28,18,17,17,17,18,28}, {31,16,16,30,16,16,31}, {31,16,16,30,16,16,16}, /* D E F */
  {14,17,16,23,17,17,15}, {17,17,17,31,17,17,17}, {14, 4, 4, 4, 4, 4,14}, /* G H I */
  { 7, 2, 2, 2, 2,18,12}, {17,18,20,24,20,18,17}, {16,16,16,16,16,16,31}, /* J K L */
  {17,27,21,21,17,17,17}, {17,17,25,21,19,17,17}, {14,17,17,17,17,17,14}, /* M N O */
  {30,17,17,30,16,16,16}, {14,17,17,17,21,18,13}, {30,17,17,30,20,18,17}, /* P Q R */
  {15,16,16,14, 1, 1,30}, {31, 4, 4, 4, 4, 4, 4}, {17,17,17,17,17,17,14}, /* S T U */
  {17,17,17,17,17,10, 4}, {17,17,17,21,21,21,10}, {17,17,10, 4,10,17,17}, /* V W X */
  {17,17,17,10, 4, 4, 4}, {31, 1, 2, 4, 8,16,31},                         /* Y Z   */
  {14,17,19,21,25,17,14}, { 4,12, 4, 4, 4, 4,14}, {14,17, 1, 2, 4, 8,31}, /* 0 1 2 */
  {31, 2, 4, 2, 1,17,14}, { 2, 6,10,18,31, 2, 2}, {31,16,30, 1, 1,17,14}, /* 3 4 5 */
  { 6, 8,16,30,17,17,14}, {31, 1, 2, 4, 8, 8, 8}, {14,17,17,14,17,17,14}, /* 6 7 8 */
  {14,17,17,15, 1, 2,12},                                                 /* 9     */
  { 0, 0, 0, 0, 0, 0, 0}, { 0, 0, 0, 0, 0,12,12}, { 0, 0, 0, 0,12, 4, 8}, /* space . , */
  { 0,12,12, 0,12,12, 0}, { 0,12,12, 0,12, 4, 8}, { 0, 0,31, 0,31, 0, 0}, /* : ; = */
  { 2, 4, 8, 8, 8, 4, 2}, { 8, 4, 2, 2, 2, 4, 8}, { 0, 0, 0,31, 0, 0, 0}, /* ( ) - */
  { 0, 1, 2, 4, 8,16, 0}, { 4, 4, 8, 0, 0, 0, 0}                          /* / '   */
};
typedef char font_is_complete[sizeof FONT / sizeof FONT[0] == sizeof FONT_CHARS - 1 ? 1 : -1];

enum { LINE = 20 };   /* line height of scale-2 text */

static int text_width(const char *s, int scale) {   /* of the longest line */
  int best = 0, n = 0;
  for (;; ++s) {
    if (*s == '\n' || !*s) {
      if (n > best) best = n;
      if (!*s) break;
      n = 0;
    } else ++n;
  }
  return best ? (6 * best - 1) * scale : 0;
}

static int text_lines(const char *s) {
  int n = *s ? 1 : 0;
  for (; *s; ++s) n += *s == '\n';
  return n;
}

/* Upper-case text, '\n' starts a line LINE*scale/2 lower, top-left corner at
 * (x, y). Vertical text (one line) reads bottom to top from its bottom-left
 * corner (x, y). */
static void draw_text(image *img, int x, int y, int scale, const char *s, rgb c, int vertical) {
  int x0 = x;
  for (; *s; ++s) {
    const char *f = strchr(FONT_CHARS, *s);
    int row, col;
    if (*s == '\n') {
      x = x0;
      y += LINE * scale / 2;
      continue;
    }
    if (f)
      for (row = 0; row < 7; ++row)
        for (col = 0; col < 5; ++col) {
          if (!(FONT[f - FONT_CHARS][row] & (16 >> col))) continue;
          if (vertical) fill_rect(img, x + row * scale, y - (col + 1) * scale, scale, scale, c);
          else fill_rect(img, x + col * scale, y + row * scale, scale, scale, c);
        }
    if (vertical) y -= 6 * scale;
    else x += 6 * scale;
  }
}

/* ------------------------------------------------------------------------ */
/* PNG: writer and checker                                                  */
/* ------------------------------------------------------------------------ */

static unsigned long crc32_of(const unsigned char *p, size_t n) {  /* PNG's CRC-32 */
  unsigned long crc = 0xFFFFFFFFUL;
  size_t i;
  int b;
  for (i = 0; i < n; ++i) {
    crc ^= p[i];
    for (b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320UL & (0UL - (crc & 1UL)));
  }
  return crc ^ 0xFFFFFFFFUL;
}

static unsigned long adler32_of(const unsigned char *p, size_t n) {  /* zlib's checksum */
  unsigned long a = 1, b = 0;
  size_t i;
  for (i = 0; i < n; ++i) {
    a = (a + p[i]) % 65521UL;
    b = (b + a) % 65521UL;
  }
  return (b << 16) | a;
}

static void put_be32(unsigned char *p, unsigned long v) {
  p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
}

static unsigned long get_be32(const unsigned char *p) {
  return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

/* Deflate (RFC 1951) lengths 3..258 and distances 1..32768: code bases and extra bits. */
static const unsigned short LEN_BASE[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                            35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const unsigned char LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                            3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const unsigned short DIST_BASE[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                                             193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                                             4097, 6145, 8193, 12289, 16385, 24577};
static const unsigned char DIST_EXTRA[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6,
                                             6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

typedef struct bit_writer {
  unsigned char *buf;
  size_t len, cap;
  unsigned long bits;
  int count, overflow;
} bit_writer;

static void put_bits(bit_writer *w, unsigned long value, int n) {   /* LSB first */
  w->bits |= value << w->count;
  w->count += n;
  while (w->count >= 8) {
    if (w->len < w->cap) w->buf[w->len++] = (unsigned char)(w->bits & 0xFF);
    else w->overflow = 1;
    w->bits >>= 8;
    w->count -= 8;
  }
}

static void put_code(bit_writer *w, unsigned code, int n) {   /* Huffman codes: MSB first */
  unsigned long rev = 0;
  int i;
  for (i = 0; i < n; ++i) rev |= (unsigned long)((code >> i) & 1u) << (n - 1 - i);
  put_bits(w, rev, n);
}

static void put_symbol(bit_writer *w, unsigned sym) {   /* the fixed literal/length code */
  if (sym < 144) put_code(w, 0x30 + sym, 8);
  else if (sym < 256) put_code(w, 0x190 + sym - 144, 9);
  else if (sym < 280) put_code(w, sym - 256, 7);
  else put_code(w, 0xC0 + sym - 280, 8);
}

static void put_match(bit_writer *w, unsigned len, unsigned dist) {
  int k = 28, d = 29;
  while (LEN_BASE[k] > len) --k;
  while (DIST_BASE[d] > dist) --d;
  put_symbol(w, 257u + (unsigned)k);
  put_bits(w, len - LEN_BASE[k], LEN_EXTRA[k]);
  put_code(w, (unsigned)d, 5);
  put_bits(w, dist - DIST_BASE[d], DIST_EXTRA[d]);
}

enum { HASH_SIZE = 1 << 15, WINDOW = 32768, MAX_MATCH = 258 };

static unsigned hash3(const unsigned char *p) {
  return (((unsigned)p[0] << 10) ^ ((unsigned)p[1] << 5) ^ p[2]) & (HASH_SIZE - 1);
}

/* One final fixed-Huffman block; greedy LZ77 with the last position of each
 * 3-byte hash. Fixed codes cost at most 9 bits a byte, so the caller's
 * buffer of n + n/8 + 16 bytes always suffices (overflow is still checked). */
static int deflate_fixed(const unsigned char *in, size_t n, bit_writer *w) {
  size_t *head = (size_t *)calloc(HASH_SIZE, sizeof *head);   /* position + 1, 0: none */
  size_t i = 0, p;
  if (!head) return -1;
  put_bits(w, 1, 1);   /* BFINAL */
  put_bits(w, 1, 2);   /* BTYPE 01: fixed Huffman codes */
  while (i < n) {
    size_t best = 0, cand = 0;
    if (i + 3 <= n) {
      cand = head[hash3(in + i)];
      if (cand && i - (cand - 1) <= WINDOW) {
        size_t limit = n - i < (size_t)MAX_MATCH ? n - i : (size_t)MAX_MATCH;
        while (best < limit && in[cand - 1 + best] == in[i + best]) ++best;
      }
    }
    if (best >= 3) put_match(w, (unsigned)best, (unsigned)(i - (cand - 1)));
    else { best = 1; put_symbol(w, in[i]); }
    for (p = i; p < i + best; ++p)
      if (p + 3 <= n) head[hash3(in + p)] = p + 1;
    i += best;
  }
  put_symbol(w, 256);   /* end of block */
  put_bits(w, 0, 7);    /* flush the last byte */
  free(head);
  return w->overflow ? -1 : 0;
}

/* Scanlines with a filter byte each: Up (2) for a row that repeats the one
 * above (all zeros then), else Sub (1) (zeros inside a run of one colour). */
static unsigned char *filter_scanlines(const image *img, size_t *len) {
  size_t stride = (size_t)img->w * 3, y, x;
  unsigned char *raw;
  *len = (stride + 1) * (size_t)img->h;
  raw = (unsigned char *)malloc(*len);
  if (!raw) return NULL;
  for (y = 0; y < (size_t)img->h; ++y) {
    const unsigned char *row = img->px + y * stride;
    unsigned char *out = raw + y * (stride + 1);
    if (y > 0 && memcmp(row, row - stride, stride) == 0) {
      out[0] = 2;
      memset(out + 1, 0, stride);
    } else {
      out[0] = 1;
      for (x = 0; x < stride; ++x) out[1 + x] = (unsigned char)(row[x] - (x >= 3 ? row[x - 3] : 0));
    }
  }
  return raw;
}

static void put_chunk(unsigned char *p, const char *type, const unsigned char *data, size_t n) {
  put_be32(p, (unsigned long)n);
  memcpy(p + 4, type, 4);
  if (n) memcpy(p + 8, data, n);
  put_be32(p + 8 + n, crc32_of(p + 4, n + 4));
}

/* The whole file in memory: signature, IHDR, one IDAT, IEND. */
static unsigned char *png_encode(const image *img, size_t *png_len) {
  static const unsigned char SIGNATURE[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  unsigned char ihdr[13], *raw, *png = NULL;
  size_t raw_len;
  bit_writer w;
  memset(&w, 0, sizeof w);
  raw = filter_scanlines(img, &raw_len);
  if (!raw) return NULL;
  w.cap = raw_len + raw_len / 8 + 16 + 6;
  w.buf = (unsigned char *)malloc(w.cap);
  if (!w.buf) goto done;
  w.buf[0] = 0x78; w.buf[1] = 0x01;   /* zlib: deflate, 32K window, check bits */
  w.len = 2;
  if (deflate_fixed(raw, raw_len, &w) || w.len + 4 > w.cap) goto done;
  put_be32(w.buf + w.len, adler32_of(raw, raw_len));
  w.len += 4;
  put_be32(ihdr, (unsigned long)img->w);
  put_be32(ihdr + 4, (unsigned long)img->h);
  ihdr[8] = 8; ihdr[9] = 2;           /* 8 bits per sample, RGB */
  ihdr[10] = ihdr[11] = ihdr[12] = 0; /* deflate, adaptive filters, no interlace */
  *png_len = 8 + (12 + 13) + (12 + w.len) + 12;
  png = (unsigned char *)malloc(*png_len);
  if (!png) goto done;
  memcpy(png, SIGNATURE, 8);
  put_chunk(png + 8, "IHDR", ihdr, 13);
  put_chunk(png + 33, "IDAT", w.buf, w.len);
  put_chunk(png + 45 + w.len, "IEND", NULL, 0);
done:
  free(raw);
  free(w.buf);
  return png;
}

typedef struct bit_reader {
  const unsigned char *p;
  size_t n, pos;
  int bit, error;
} bit_reader;

static unsigned get_bit(bit_reader *r) {
  unsigned b;
  if (r->pos >= r->n) { r->error = 1; return 0; }
  b = (r->p[r->pos] >> r->bit) & 1u;
  if (++r->bit == 8) { r->bit = 0; ++r->pos; }
  return b;
}

static unsigned get_bits(bit_reader *r, int n) {   /* LSB first */
  unsigned v = 0;
  int i;
  for (i = 0; i < n; ++i) v |= get_bit(r) << i;
  return v;
}

static unsigned get_code(bit_reader *r, unsigned code, int n) {   /* n more Huffman bits, MSB first */
  while (n-- > 0) code = (code << 1) | get_bit(r);
  return code;
}

/* Inflates what this writer produces (stored and fixed-Huffman blocks) into
 * exactly `cap` bytes; anything else is an error. */
static int inflate_fixed(const unsigned char *in, size_t n, unsigned char *out, size_t cap) {
  bit_reader r;
  size_t len = 0;
  unsigned final;
  memset(&r, 0, sizeof r);
  r.p = in;
  r.n = n;
  do {
    unsigned type;
    final = get_bit(&r);
    type = get_bits(&r, 2);
    if (type == 0) {   /* stored */
      size_t count;
      if (r.bit) { r.bit = 0; ++r.pos; }
      if (r.pos + 4 > n) return -1;
      count = in[r.pos] | (size_t)in[r.pos + 1] << 8;
      if ((count ^ (in[r.pos + 2] | (size_t)in[r.pos + 3] << 8)) != 0xFFFF) return -1;
      r.pos += 4;
      if (r.pos + count > n || len + count > cap) return -1;
      memcpy(out + len, in + r.pos, count);
      r.pos += count;
      len += count;
    } else if (type == 1) {
      for (;;) {
        unsigned sym = get_code(&r, 0, 7);
        if (sym > 23) {
          sym = get_code(&r, sym, 1);
          if (sym >= 0x30 && sym <= 0xBF) sym -= 0x30;
          else if (sym >= 0xC0 && sym <= 0xC7) sym = 280 + sym - 0xC0;
          else sym = 144 + get_code(&r, sym, 1) - 0x190;
        } else sym += 256;
        if (r.error) return -1;
        if (sym < 256) {
          if (len >= cap) return -1;
          out[len++] = (unsigned char)sym;
        } else if (sym == 256) break;
        else {
          unsigned k = sym - 257, d, count, dist;
          if (k > 28) return -1;
          count = LEN_BASE[k] + get_bits(&r, LEN_EXTRA[k]);
          d = get_code(&r, 0, 5);
          if (d > 29) return -1;
          dist = DIST_BASE[d] + get_bits(&r, DIST_EXTRA[d]);
          if (r.error || dist > len || len + count > cap) return -1;
          for (; count; --count, ++len) out[len] = out[len - dist];
        }
      }
    } else return -1;
    if (r.error) return -1;
  } while (!final);
  return len == cap ? 0 : -1;
}

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf = NULL;
  long size;
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
    buf = (unsigned char *)malloc((size_t)size);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
      free(buf);
      buf = NULL;
    }
    *len = (size_t)size;
  }
  fclose(f);
  return buf;
}

/* Reads `path` back and checks it is a valid PNG of exactly `img`; returns
 * NULL or what is wrong. */
static const char *png_check(const char *path, const image *img) {
  static const unsigned char SIGNATURE[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  size_t len = 0, pos = 8, zlen = 0, stride = (size_t)img->w * 3, raw_len, x, y;
  unsigned char *png = read_file(path, &len), *z = NULL, *raw = NULL;
  const char *why = NULL;
  int chunks = 0, ended = 0;
  if (!png) return "cannot read it back";
  raw_len = (stride + 1) * (size_t)img->h;
  z = (unsigned char *)malloc(len);
  raw = (unsigned char *)malloc(raw_len);
  if (!z || !raw) { why = "out of memory"; goto done; }
  if (len < 8 || memcmp(png, SIGNATURE, 8) != 0) { why = "no PNG signature"; goto done; }
  while (!ended) {
    unsigned long n;
    const unsigned char *type;
    if (pos + 12 > len || (n = get_be32(png + pos)) > len - pos - 12) {
      why = "truncated chunk";
      goto done;
    }
    type = png + pos + 4;
    if (crc32_of(type, n + 4) != get_be32(png + pos + 8 + n)) { why = "chunk CRC mismatch"; goto done; }
    if (chunks++ == 0 &&
        (memcmp(type, "IHDR", 4) != 0 || n != 13 || get_be32(type + 4) != (unsigned long)img->w ||
         get_be32(type + 8) != (unsigned long)img->h || type[12] != 8 || type[13] != 2 ||
         type[14] || type[15] || type[16])) { why = "bad IHDR"; goto done; }
    if (memcmp(type, "IDAT", 4) == 0) {
      memcpy(z + zlen, type + 4, n);
      zlen += n;
    }
    ended = memcmp(type, "IEND", 4) == 0;
    pos += 12 + n;
  }
  if (pos != len) { why = "data after IEND"; goto done; }
  if (zlen < 6 || (z[0] & 0x0F) != 8 || (z[0] * 256u + z[1]) % 31 != 0 || (z[1] & 0x20)) {
    why = "bad zlib header"; goto done;
  }
  if (inflate_fixed(z + 2, zlen - 6, raw, raw_len)) {
    why = "deflate stream does not decode";
    goto done;
  }
  if (adler32_of(raw, raw_len) != get_be32(z + zlen - 4)) { why = "Adler-32 mismatch"; goto done; }
  for (y = 0; y < (size_t)img->h && !why; ++y) {   /* undo the filters, compare pixels */
    unsigned char *row = raw + y * (stride + 1) + 1;
    const unsigned char *above = row - (stride + 1);
    if (row[-1] > 2 || (row[-1] == 2 && y == 0)) { why = "unexpected filter type"; break; }
    for (x = 0; x < stride; ++x) {
      if (row[-1] == 1 && x >= 3) row[x] = (unsigned char)(row[x] + row[x - 3]);
      if (row[-1] == 2) row[x] = (unsigned char)(row[x] + above[x]);
    }
    if (memcmp(row, img->px + y * stride, stride) != 0) why = "pixels differ from the picture";
  }
done:
  free(png);
  free(z);
  free(raw);
  return why;
}

/* Writes img to path, reads it back and checks it; returns the file size, or 0 on error. */
static size_t png_save(const image *img, const char *path) {
  size_t len = 0, wrote = 0;
  unsigned char *png = png_encode(img, &len);
  const char *why;
  FILE *f;
  if (!png) { fprintf(stderr, "combiner-pattern: %s: out of memory while encoding\n", path); return 0; }
  f = fopen(path, "wb");
  if (f) {
    wrote = fwrite(png, 1, len, f);
    if (fclose(f) != 0) wrote = 0;
  }
  free(png);
  if (!f || wrote != len) {
    fprintf(stderr, "combiner-pattern: cannot write %s\n", path);
    return 0;
  }
  if ((why = png_check(path, img)) != NULL) {
    fprintf(stderr, "combiner-pattern: %s: %s\n", path, why);
    return 0;
  }
  return len;
}

/* ------------------------------------------------------------------------ */
/* Colours                                                                  */
/* ------------------------------------------------------------------------ */

/* Tableau 10: distinct hues of similar weight, none close to black or white. */
static const rgb PALETTE[] = {{78, 121, 167}, {242, 142, 43}, {225, 87, 89},  {118, 183, 178},
                              {89, 161, 79},  {237, 201, 72}, {176, 122, 161}, {255, 157, 167},
                              {156, 117, 95}, {186, 176, 172}};
enum { PALETTE_SIZE = sizeof PALETTE / sizeof PALETTE[0] };

static rgb lighter(rgb c) {
  c.r = (unsigned char)((c.r + 255) / 2);
  c.g = (unsigned char)((c.g + 255) / 2);
  c.b = (unsigned char)((c.b + 255) / 2);
  return c;
}

static rgb darker(rgb c) {
  c.r = (unsigned char)(c.r * 3 / 5);
  c.g = (unsigned char)(c.g * 3 / 5);
  c.b = (unsigned char)(c.b * 3 / 5);
  return c;
}

/* The colour of region id r of combiner_support_map: hue = which block,
 * column, row or level; lighter = the mirrored side (below the query's row,
 * right of its column, after it). */
static rgb region_color(combiner_kind kind, int plan, int m, int r) {
  int hue = r - 1, light = 0;
  if (r < 0) return WHITE;
  if (r == 0) return BLACK;
  if (kind == COMBINER_MIXTURE && plan == 0) { hue = (r - 1) % m; light = r > m; }
  if (kind == COMBINER_MIXTURE && plan == 1) { hue = (r - 1) / 2; light = r % 2 == 0; }
  if (kind == COMBINER_LOGSPARSE) { hue = r % 32 - 1; light = r > 32; }
  return light ? lighter(PALETTE[hue % PALETTE_SIZE]) : PALETTE[hue % PALETTE_SIZE];
}

/* Viridis at t in [0, 1] (dark purple .. yellow), from nine samples. */
static rgb viridis(double t) {
  static const unsigned char V[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                        {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                        {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  double x = (t < 0 ? 0 : t > 1 ? 1 : t) * 8, f;
  int k = x >= 8 ? 7 : (int)x;
  rgb c;
  f = x - k;
  c.r = (unsigned char)(V[k][0] + f * (V[k + 1][0] - V[k][0]) + 0.5);
  c.g = (unsigned char)(V[k][1] + f * (V[k + 1][1] - V[k][1]) + 0.5);
  c.b = (unsigned char)(V[k][2] + f * (V[k + 1][2] - V[k][2]) + 0.5);
  return c;
}

static rgb weight_color(double w) {   /* log10 scale over LOG_DECADES decades */
  return viridis(w > 0 ? 1.0 + log10(w) / LOG_DECADES : 0.0);
}

/* ------------------------------------------------------------------------ */
/* Panels and legends                                                       */
/* ------------------------------------------------------------------------ */

/* L x L cells of s pixels at (x, y), a frame around them and thin lines at
 * the block boundaries (every m cells; m = 0: none). */
static void draw_panel(image *img, int x, int y, int L, int s, int m, const rgb *cells) {
  int i, j;
  fill_rect(img, x - 1, y - 1, L * s + 2, L * s + 2, FRAME);
  for (i = 0; i < L; ++i)
    for (j = 0; j < L; ++j) fill_rect(img, x + j * s, y + i * s, s, s, cells[i * L + j]);
  for (i = m; m > 0 && i < L; i += m) {
    fill_rect(img, x + i * s, y, 1, L * s, GRID);
    fill_rect(img, x, y + i * s, L * s, 1, GRID);
  }
}

/* Legends are drawn at a text scale sc (2 in the single pictures, 3 in the
 * overviews): swatches as high as a letter, lines LINE*sc/2 + 2 apart. */
static int legend_line(int sc) { return LINE * sc / 2 + 2; }

static void draw_swatch(image *img, int x, int y, int w, int sc, rgb c) {
  fill_rect(img, x, y, w, 7 * sc, FRAME);
  fill_rect(img, x + 1, y + 1, w - 2, 7 * sc - 2, c);
}

static int support_legend_height(const char *notes, int sc) {
  return 3 * legend_line(sc) + text_lines(notes) * LINE * sc / 2;
}

/* Black, white and a strip of region colours, then what the colours mean. */
static void draw_support_legend(image *img, int x, int y, int sc, const char *notes) {
  int i, line = legend_line(sc), sw = 7 * sc;
  draw_swatch(img, x, y, sw, sc, BLACK);
  draw_text(img, x + sw + 4 * sc, y, sc, "DIRECT", INK, 0);
  draw_swatch(img, x, y + line, sw, sc, WHITE);
  draw_text(img, x + sw + 4 * sc, y + line, sc, "NOT ATTENDED", INK, 0);
  draw_swatch(img, x, y + 2 * line, 30 * sc + 2, sc, FRAME);
  for (i = 0; i < 6; ++i)
    fill_rect(img, x + 1 + 5 * sc * i, y + 2 * line + 1, 5 * sc, 7 * sc - 2, PALETTE[i]);
  draw_text(img, x + 36 * sc, y + 2 * line, sc, "THROUGH AN ABSTRACTION", INK, 0);
  draw_text(img, x + 36 * sc, y + 3 * line, sc, notes, INK, 0);
}

static const char *const WEIGHT_TITLE = "WEIGHT OF V J IN OUT I, LOG SCALE";
static int weight_legend_height(int sc) { return 3 * legend_line(sc) + 7 * sc + 6 * sc; }

/* The weight colours, a tick and a label per decade, and white. */
static void draw_weight_legend(image *img, int x, int y, int sc, int w) {
  static const char *const LABELS[] = {"1", "0.1", "0.01", "1E-3", "1E-4", "1E-5", "1E-6"};
  int i, bar = x + 12 * sc, line = legend_line(sc);
  draw_text(img, x, y, sc, WEIGHT_TITLE, INK, 0);
  y += line;
  fill_rect(img, bar - 1, y - 1, w + 2, 7 * sc + 2, FRAME);
  for (i = 0; i < w; ++i) fill_rect(img, bar + i, y, 1, 7 * sc, viridis((double)i / (w - 1)));
  for (i = 0; i <= LOG_DECADES; ++i) {
    const char *label = LABELS[LOG_DECADES - i];
    int tx = bar + i * (w - 1) / LOG_DECADES;
    fill_rect(img, tx, y + 7 * sc + 1, 1, 2 * sc, INK);
    draw_text(img, tx - text_width(label, sc) / 2, y + 10 * sc, sc, label, INK, 0);
  }
  y += 10 * sc + line + 2 * sc;
  draw_swatch(img, x, y, 7 * sc, sc, WHITE);
  draw_text(img, x + 11 * sc, y, sc, "NOT ATTENDED", INK, 0);
}

/* ------------------------------------------------------------------------ */
/* The pictures                                                             */
/* ------------------------------------------------------------------------ */

typedef struct kind_info {
  combiner_kind kind;
  const char *name, *title;
  const char *notes;   /* what the colours of its support map mean */
} kind_info;

static const kind_info KINDS[] = {
  {COMBINER_FIXED, "fixed", "FIXED", "ONE COLOUR PER BLOCK OF J"},
  {COMBINER_AXIAL, "axial", "AXIAL",
   "ONE COLOUR PER ROW OF J; DARKER:\nTHE CELL IN I'S COLUMN WHOSE\nSUMMARY STANDS FOR THE ROW"},
  {COMBINER_MIXTURE, "mixture", "MIXTURE",
   "VERTICAL: ONE COLOUR PER COLUMN OF J, LIGHTER BELOW I'S ROW\n"
   "HORIZONTAL: ONE COLOUR PER ROW OF J, LIGHTER RIGHT OF I'S COLUMN"},
  {COMBINER_LOGSPARSE, "logsparse", "LOGSPARSE",
   "ONE COLOUR PER LEVEL: ALIGNED\nBLOCKS OF 2, 4, 8, 16, 32;\nLIGHTER AFTER I"},
  {COMBINER_DENSE, "dense", "DENSE", "NONE: ALL DIRECT"}};
enum { KIND_COUNT = sizeof KINDS / sizeof KINDS[0] };
static const char *const PLAN_TITLES[2] = {"VERTICAL PLAN: COLUMNS", "HORIZONTAL PLAN: ROWS"};
static const char *const OVERVIEW_NOTES =
  "ONE COLOUR PER REGION (BLOCK, ROW, COLUMN OR LEVEL OF J);\n"
  "LIGHTER: BELOW I'S ROW, RIGHT OF I'S COLUMN OR AFTER I;\n"
  "DARKER (AXIAL): THE CELL WHOSE SUMMARY STANDS FOR THE ROW";

typedef struct context {
  const char *dir;
  float *q, *k;        /* [SEQ_LEN][HEAD_DIM], shared by every picture */
  int *map[2];         /* support maps of plans 0 and 1 */
  float *matrix;       /* effective attention matrix */
  rgb *cells;
  image overview[2];   /* support, matrix */
  int files;
  size_t bytes;
} context;

static combiner_config make_config(combiner_kind kind, int L, int causal) {
  combiner_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.kind = kind;
  cfg.seq_len = L;
  cfg.head_dim = HEAD_DIM;
  cfg.num_heads = 1;
  cfg.block = BLOCK;
  cfg.causal = causal;
  return cfg;
}

/* The support map's colours. Axial also marks, darker, the cell through
 * which query i reaches row t: (t, column of i), whose summary (K^, R) stands
 * for the row; a short last row lacking that cell uses its fixed-style
 * abstraction instead, and stays unmarked. */
static void support_cells(const context *c, combiner_kind kind, int plan, int L) {
  int i, j;
  for (i = 0; i < L; ++i)
    for (j = 0; j < L; ++j) {
      int r = c->map[plan][i * L + j];
      rgb color = region_color(kind, plan, BLOCK, r);
      if (kind == COMBINER_AXIAL && r > 0 && j % BLOCK == i % BLOCK) color = darker(color);
      c->cells[i * L + j] = color;
    }
}

static void matrix_cells(const context *c, int L) {
  int i;
  for (i = 0; i < L * L; ++i) c->cells[i] = c->map[0][i] < 0 ? WHITE : weight_color(c->matrix[i]);
}

static int grid_of(combiner_kind kind) {   /* block lines where blocks mean something */
  return kind == COMBINER_DENSE || kind == COMBINER_LOGSPARSE ? 0 : BLOCK;
}

static int save(context *c, const image *img, const char *name) {
  char path[4096];
  size_t bytes;
  int n = snprintf(path, sizeof path, "%s/%s", c->dir, name);
  if (n < 0 || (size_t)n >= sizeof path) {
    fprintf(stderr, "combiner-pattern: path too long: %s/%s\n", c->dir, name);
    return -1;
  }
  if (!(bytes = png_save(img, path))) return -1;
  printf("  %-38s %4d x %-4d %6lu bytes\n", name, img->w, img->h, (unsigned long)bytes);
  c->files++;
  c->bytes += bytes;
  return 0;
}

static const char *const SUBTITLE = "ROW: QUERY I.  COLUMN: POSITION J.";

/* The smallest width >= w that shows `text` (scale 2) starting at x. */
static int fit(int w, int x, const char *text) {
  int need = x + text_width(text, 2) + PAD;
  return need > w ? need : w;
}

/* support_<kind>_<mode><suffix>.png and matrix_<kind>_<mode><suffix>.png */
static int single_pictures(context *c, const kind_info *ki, int causal, int L, const char *suffix) {
  const char *mode = causal ? "causal" : "bidirectional";
  int plans = ki->kind == COMBINER_MIXTURE ? 2 : 1, side = L * CELL, plan, w, y, st;
  const int top = PAD + 2 * LINE + 10;   /* below title and subtitle */
  char title[96], name[96];
  image img;
  snprintf(title, sizeof title, "%s, %s, L = %d, BLOCK %d", ki->title,
           causal ? "CAUSAL" : "BIDIRECTIONAL", L, BLOCK);

  w = fit(fit(2 * PAD + plans * side + (plans - 1) * GAP, PAD, title), PAD + 72, ki->notes);
  y = top + (plans - 1) * LINE;   /* the panels */
  if (image_init(&img, w, y + side + 16 + support_legend_height(ki->notes, 2) + PAD)) return -1;
  draw_text(&img, PAD, PAD, 2, title, INK, 0);
  draw_text(&img, PAD, PAD + LINE, 2, SUBTITLE, INK, 0);
  for (plan = 0; plan < plans; ++plan) {
    int x = PAD + plan * (side + GAP);
    if (plans == 2) draw_text(&img, x, top, 2, PLAN_TITLES[plan], INK, 0);
    support_cells(c, ki->kind, plan, L);
    draw_panel(&img, x, y, L, CELL, grid_of(ki->kind), c->cells);
  }
  draw_support_legend(&img, PAD, y + side + 16, 2, ki->notes);
  snprintf(name, sizeof name, "support_%s_%s%s.png", ki->name, mode, suffix);
  st = save(c, &img, name);
  image_free(&img);
  if (st) return -1;

  w = fit(fit(2 * PAD + side, PAD, title), PAD, WEIGHT_TITLE);
  if (image_init(&img, w, top + side + 16 + weight_legend_height(2) + PAD)) return -1;
  draw_text(&img, PAD, PAD, 2, title, INK, 0);
  draw_text(&img, PAD, PAD + LINE, 2, SUBTITLE, INK, 0);
  matrix_cells(c, L);
  draw_panel(&img, PAD, top, L, CELL, grid_of(ki->kind), c->cells);
  draw_weight_legend(&img, PAD, top + side + 16, 2, 300);
  snprintf(name, sizeof name, "matrix_%s_%s%s.png", ki->name, mode, suffix);
  st = save(c, &img, name);
  image_free(&img);
  return st;
}

/* The overviews: a column per panel, the causal row above the bidirectional
 * one; text at scale 3, so that it stays legible when a page shrinks them. */
enum {
  OV_TEXT = 3,
  OV_LINE = LINE * OV_TEXT / 2 + 2,
  OV_SIDE = SEQ_LEN * OVERVIEW_CELL,
  OV_LEFT = PAD + 7 * OV_TEXT + 16,    /* room for the vertical row labels */
  OV_TOP = PAD + 3 * OV_LINE + 12,     /* title, subtitle, column titles */
  OV_LEGEND = OV_TOP + 2 * OV_SIDE + GAP + 28
};
static int overview_x(int column) { return OV_LEFT + column * (OV_SIDE + GAP); }
static int overview_y(int row) { return OV_TOP + row * (OV_SIDE + GAP); }

static int overview_init(image *img, int columns, const char *title, int legend_height) {
  char sub[96];
  int row, w = OV_LEFT + columns * OV_SIDE + (columns - 1) * GAP + PAD;
  if (image_init(img, w, OV_LEGEND + legend_height + PAD)) return -1;
  snprintf(sub, sizeof sub, "L = %d, BLOCK %d.  %s", SEQ_LEN, BLOCK, SUBTITLE);
  draw_text(img, PAD, PAD, OV_TEXT, title, INK, 0);
  draw_text(img, PAD, PAD + OV_LINE, OV_TEXT, sub, INK, 0);
  for (row = 0; row < 2; ++row) {
    const char *label = row ? "BIDIRECTIONAL" : "CAUSAL";
    int y = overview_y(row) + OV_SIDE / 2 + text_width(label, OV_TEXT) / 2;
    draw_text(img, PAD, y, OV_TEXT, label, INK, 1);
  }
  return 0;
}

/* Both pictures of one kind and mode, and its panels of the overviews. */
static int draw_kind(context *c, const kind_info *ki, int causal, int L, const char *suffix) {
  static const char *const MIXTURE_TITLES[2] = {"MIXTURE: COLUMNS", "MIXTURE: ROWS"};
  combiner_config cfg = make_config(ki->kind, L, causal);
  combiner_status st;
  int plan, plans = ki->kind == COMBINER_MIXTURE ? 2 : 1, row = !causal;
  for (plan = 0; plan < 2; ++plan)
    if ((st = combiner_support_map(&cfg, plan, c->map[plan])) != COMBINER_OK) goto fail;
  if ((st = combiner_attention_matrix(&cfg, c->q, c->k, c->matrix)) != COMBINER_OK) goto fail;
  if (single_pictures(c, ki, causal, L, suffix)) return -1;
  if (L == SEQ_LEN) {   /* the support overview has a column per Mixture plan */
    int column = (int)(ki - KINDS), support_column = column + (ki->kind > COMBINER_MIXTURE);
    for (plan = 0; plan < plans; ++plan) {
      int x = overview_x(support_column + plan);
      draw_text(&c->overview[0], x, OV_TOP - OV_LINE - 4, OV_TEXT,
                plans == 2 ? MIXTURE_TITLES[plan] : ki->title, INK, 0);
      support_cells(c, ki->kind, plan, L);
      draw_panel(&c->overview[0], x, overview_y(row), L, OVERVIEW_CELL, grid_of(ki->kind), c->cells);
    }
    draw_text(&c->overview[1], overview_x(column), OV_TOP - OV_LINE - 4, OV_TEXT, ki->title, INK, 0);
    matrix_cells(c, L);
    draw_panel(&c->overview[1], overview_x(column), overview_y(row), L, OVERVIEW_CELL,
               grid_of(ki->kind), c->cells);
  }
  return 0;
fail:
  fprintf(stderr, "combiner-pattern: %s: %s\n", ki->name, combiner_status_string(st));
  return -1;
}

int main(int argc, char **argv) {
  context c;
  unsigned seed = 12345u;
  size_t i, n = (size_t)SEQ_LEN * HEAD_DIM, cells = (size_t)SEQ_LEN * SEQ_LEN;
  int causal, kind, ok = 0;
  if (argc != 2 || argv[1][0] == '-') {
    fprintf(stderr, "usage: %s DIR\n  writes the attention-pattern pictures (PNG) into the "
                    "existing directory DIR\n", argv[0]);
    return 2;
  }
  memset(&c, 0, sizeof c);
  c.dir = argv[1];
  c.q = (float *)malloc(n * sizeof(float));
  c.k = (float *)malloc(n * sizeof(float));
  c.map[0] = (int *)malloc(cells * sizeof(int));
  c.map[1] = (int *)malloc(cells * sizeof(int));
  c.matrix = (float *)malloc(cells * sizeof(float));
  c.cells = (rgb *)malloc(cells * sizeof(rgb));
  if (!c.q || !c.k || !c.map[0] || !c.map[1] || !c.matrix || !c.cells) {
    fprintf(stderr, "combiner-pattern: out of memory\n");
    goto done;
  }
  for (i = 0; i < 2 * n; ++i) {   /* a fixed LCG: the same pictures on every machine */
    seed = seed * 1664525u + 1013904223u;
    (i < n ? c.q : c.k)[i % n] = (float)(INPUT_GAIN * ((seed >> 8) * (2.0 / 16777216.0) - 1.0));
  }
  if (overview_init(&c.overview[0], KIND_COUNT + 1, "WHAT EACH FACTORIZATION ATTENDS TO",
                    support_legend_height(OVERVIEW_NOTES, OV_TEXT)) ||
      overview_init(&c.overview[1], KIND_COUNT, "EFFECTIVE ATTENTION MATRIX OF RANDOM Q AND K",
                    weight_legend_height(OV_TEXT)))
    goto done;
  printf("combiner-pattern: writing into %s\n", c.dir);
  for (causal = 1; causal >= 0; --causal)
    for (kind = 0; kind < KIND_COUNT; ++kind)
      if (draw_kind(&c, &KINDS[kind], causal, SEQ_LEN, "")) goto done;
  if (draw_kind(&c, &KINDS[1], 0, SHORT_LEN, "_L45") || draw_kind(&c, &KINDS[2], 0, SHORT_LEN, "_L45"))
    goto done;
  draw_support_legend(&c.overview[0], OV_LEFT, OV_LEGEND, OV_TEXT, OVERVIEW_NOTES);
  draw_weight_legend(&c.overview[1], OV_LEFT, OV_LEGEND, OV_TEXT, 480);
  if (save(&c, &c.overview[0], "overview_support.png") ||
      save(&c, &c.overview[1], "overview_matrix.png"))
    goto done;
  printf("combiner-pattern: %d pictures, %lu bytes, each read back and checked\n", c.files,
         (unsigned long)c.bytes);
  ok = 1;
done:
  image_free(&c.overview[0]);
  image_free(&c.overview[1]);
  free(c.q); free(c.k); free(c.map[0]); free(c.map[1]); free(c.matrix); free(c.cells);
  return ok ? 0 : 1;
}
