/*
 * counter: the demo's counter service, an HTTP/1.1 server keeping one integer in memory.
 *
 *   GET /get_counter                the value
 *   GET /increment_counter          adds one, returns the new value
 *   GET /get_and_increment_counter  returns the value, then adds one (fetch-and-add: 0, 1, 2...)
 *   GET /reset_counter              sets it to 0, returns 0
 *
 * Bodies are the decimal value and a newline, text/plain. Other paths get 404; other methods on
 * these paths 405 with Allow: GET (HEAD included: a HEAD of /increment_counter would have to
 * increment; like every answer to HEAD, that 405 has no body). Every endpoint is a GET, as in
 * the original demo, so a browser or `curl URL` drives it; only /get_counter leaves the count
 * alone, so probes use it.
 *
 * Usage: counter [[ADDR:]PORT]; without an argument PORT from the environment, else 8080, on
 * 0.0.0.0. SIGTERM or SIGINT: exit 0.
 *
 * It is benchmarked with wrk through a Service address, so it is one thread around a
 * level-triggered epoll loop over non-blocking sockets (Linux): one count needs no locks, and one
 * core serves well over 100,000 requests a second. Per connection: keep-alive (HTTP/1.0 only
 * with Connection: keep-alive), requests split across reads or pipelined several to a read,
 * request bodies (Content-Length) read and discarded, a header limit of 8 KiB (431, or 414 for
 * a request line alone over it), responses buffered and written as the peer takes them, the
 * rest of a pipeline held back while 64 KiB of responses wait (so a client that does not read
 * cannot grow our memory), and timeouts for idle (60 s), half-sent (20 s, answered 408) and
 * not-reading (30 s) clients. A connection closed after a response (Connection: close, an
 * error) is shut down for writing and its input drained for up to 2 s first, so the response is
 * not lost to a reset. Running out of file descriptors drops the newest connection rather than
 * spinning. Host is not required (curl, probes and nc scripts all work); Transfer-Encoding
 * request bodies are refused with 501.
 */
#define _GNU_SOURCE /* accept4 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
  HEADER_LIMIT = 8192,           /* request line and headers of one request */
  OUTPUT_HIGH_WATER = 64 * 1024, /* stop answering a pipeline while this much waits */
  MAX_BODY = 1024 * 1024,        /* a larger Content-Length is refused with 413 */
  ACCEPTS_PER_WAKE = 128,
  MAX_EVENTS = 256,
  IDLE_TIMEOUT = 60,   /* s: keep-alive connection without a request */
  HEADER_TIMEOUT = 20, /* s: from a request's first byte to its last */
  WRITE_TIMEOUT = 30,  /* s: responses waiting for a peer that does not read */
  LINGER_TIMEOUT = 2,  /* s: draining input after the last response */
  MAX_DRAIN = 1 << 20, /* bytes drained before closing anyway */
};

struct conn {
  int fd;
  uint32_t events; /* the epoll interest registered */
  char* in;        /* unconsumed input (a partial or held-back request), HEADER_LIMIT bytes */
  size_t in_len;
  char* out; /* responses not yet written: out[out_off, out_len) */
  size_t out_off, out_len, out_cap;
  uint64_t body_left; /* bytes of the current request's body still to discard */
  size_t drained;
  bool close_after;     /* no more requests: close once the output is written */
  bool peer_eof;        /* the peer shut down its side */
  bool draining;        /* our side is shut down; reading until EOF, then close */
  time_t partial_since; /* when the request being received started, 0 if none */
  time_t deadline;
  struct conn *prev, *next;
};

static volatile sig_atomic_t stop_signal;
static uint64_t counter;
static int epfd = -1;
static int spare_fd = -1; /* given up to accept-and-close a connection when out of fds */
static struct conn* conns;
static time_t now; /* CLOCK_MONOTONIC seconds, once per loop turn */
static char date_header[64];
static time_t date_second = -1;
static char read_buf[HEADER_LIMIT]; /* reads of connections with no buffered input */

static void on_signal(int sig) { stop_signal = sig; }

static time_t monotonic_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec;
}

/* The Date header, formatted once a second. */
static void update_date(void) {
  time_t t = time(NULL);
  if (t == date_second) return;
  date_second = t;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date_header, sizeof date_header, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

/* ---- output ---- */

static bool out_reserve(struct conn* c, size_t more) {
  if (c->out_off > 0 && c->out_off == c->out_len) c->out_off = c->out_len = 0;
  if (c->out_len + more <= c->out_cap) return true;
  if (c->out_off > 0) { /* compact before growing */
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
    if (c->out_len + more <= c->out_cap) return true;
  }
  size_t cap = c->out_cap ? c->out_cap : 512;
  while (cap < c->out_len + more) cap *= 2;
  char* p = realloc(c->out, cap);
  if (!p) return false;
  c->out = p;
  c->out_cap = cap;
  return true;
}

static size_t out_pending(const struct conn* c) { return c->out_len - c->out_off; }

static char* put(char* p, const char* s) {
  size_t n = strlen(s);
  memcpy(p, s, n);
  return p + n;
}

static char* put_u64(char* p, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

static const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Internal Server Error";
  }
}

/*
 * Appends a response. keep_alive: the connection stays open (said explicitly to HTTP/1.0
 * clients); otherwise "Connection: close" and no further request is read. body NULL: the
 * value, else the text (the reason phrase in lower case, for errors). head: the response to a
 * HEAD request, its Content-Length without the content.
 */
static void respond(struct conn* c, int status, const char* body, uint64_t value, bool keep_alive,
                    bool http10, bool head) {
  char text[24];
  size_t body_len;
  if (!body) {
    char* e = put_u64(text, value);
    *e++ = '\n';
    body_len = (size_t)(e - text);
    body = text;
  } else {
    body_len = strlen(body);
  }
  if (!out_reserve(c, 256 + body_len)) {
    c->close_after = true; /* out of memory: drop the connection */
    return;
  }
  char* p = c->out + c->out_len;
  p = put(p, "HTTP/1.1 ");
  p = put_u64(p, (uint64_t)status);
  *p++ = ' ';
  p = put(p, reason_phrase(status));
  p = put(p, "\r\n");
  p = put(p, date_header);
  p = put(p, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  p = put_u64(p, body_len);
  p = put(p, "\r\n");
  if (status == 200) p = put(p, "Cache-Control: no-store\r\n");
  if (status == 405) p = put(p, "Allow: GET\r\n");
  if (!keep_alive)
    p = put(p, "Connection: close\r\n");
  else if (http10)
    p = put(p, "Connection: keep-alive\r\n");
  p = put(p, "\r\n");
  if (!head) {
    memcpy(p, body, body_len);
    p += body_len;
  }
  c->out_len = (size_t)(p - c->out);
  if (!keep_alive) c->close_after = true;
}

/* An error that ends the connection; the body is the reason phrase in lower case. */
static void respond_error(struct conn* c, int status) {
  char body[64];
  size_t n = 0;
  for (const char* r = reason_phrase(status); *r && n < sizeof body - 2; r++)
    body[n++] = (char)(*r >= 'A' && *r <= 'Z' ? *r - 'A' + 'a' : *r);
  body[n++] = '\n';
  body[n] = '\0';
  respond(c, status, body, 0, false, false, false);
}

/* Writes what it can: 1 all written, 0 the socket is full, -1 the connection is gone. */
static int flush(struct conn* c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n >= 0) {
      c->out_off += (size_t)n;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return 0;
    } else {
      return -1;
    }
  }
  c->out_off = c->out_len = 0;
  return 1;
}

/* ---- requests ---- */

struct request {
  const char* method;
  size_t method_len;
  const char* path; /* without query or fragment */
  size_t path_len;
  bool http10;
  bool conn_close, conn_keep_alive;
  bool has_length, has_transfer_encoding;
  uint64_t content_length;
};

static bool is_tchar(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return true;
  if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') return true;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool token_eq(const char* s, size_t n, const char* lit) {
  return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static void trim(const char** s, size_t* n) {
  while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

/* Connection: a comma-separated list of options. */
static void parse_connection(struct request* rq, const char* v, size_t n) {
  while (n) {
    const char* comma = memchr(v, ',', n);
    size_t len = comma ? (size_t)(comma - v) : n;
    const char* t = v;
    size_t tn = len;
    trim(&t, &tn);
    if (token_eq(t, tn, "close")) rq->conn_close = true;
    if (token_eq(t, tn, "keep-alive")) rq->conn_keep_alive = true;
    if (!comma) break;
    v = comma + 1;
    n -= len + 1;
  }
}

/* Content-Length: digits; 0 or an HTTP status. */
static int parse_length(struct request* rq, const char* v, size_t n) {
  if (n == 0) return 400;
  uint64_t len = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return 400;
    if (len > (UINT64_MAX - 9) / 10) return 413;
    len = len * 10 + (uint64_t)(v[i] - '0');
  }
  if (rq->has_length && rq->content_length != len) return 400;
  rq->has_length = true;
  rq->content_length = len;
  return len > MAX_BODY ? 413 : 0;
}

/* The request line: METHOD SP TARGET SP HTTP/1.x; 0 or an HTTP status. */
static int parse_request_line(struct request* rq, const char* s, size_t n) {
  const char* sp1 = memchr(s, ' ', n);
  if (!sp1 || sp1 == s) return 400;
  rq->method = s;
  rq->method_len = (size_t)(sp1 - s);
  for (size_t i = 0; i < rq->method_len; i++)
    if (!is_tchar((unsigned char)s[i])) return 400;
  const char* target = sp1 + 1;
  size_t rest = n - (size_t)(target - s);
  const char* sp2 = memchr(target, ' ', rest);
  if (!sp2 || sp2 == target) return 400;
  size_t target_len = (size_t)(sp2 - target);
  for (size_t i = 0; i < target_len; i++)
    if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f) return 400;
  const char* version = sp2 + 1;
  size_t version_len = n - (size_t)(version - s);
  if (version_len == 8 && memcmp(version, "HTTP/1.", 7) == 0 && version[7] >= '0' &&
      version[7] <= '9') {
    rq->http10 = version[7] == '0';
  } else if (version_len >= 5 && memcmp(version, "HTTP/", 5) == 0) {
    return 505;
  } else {
    return 400;
  }
  /* origin-form /path?query, or absolute-form http://host/path as sent to proxies */
  if (target[0] != '/' && !(target_len == 1 && target[0] == '*')) {
    size_t scheme;
    if (target_len > 7 && strncasecmp(target, "http://", 7) == 0)
      scheme = 7;
    else if (target_len > 8 && strncasecmp(target, "https://", 8) == 0)
      scheme = 8;
    else
      return 400;
    const char* slash = memchr(target + scheme, '/', target_len - scheme);
    if (slash) {
      target_len -= (size_t)(slash - target);
      target = slash;
    } else {
      target = "/";
      target_len = 1;
    }
  }
  size_t path_len = 0;
  while (path_len < target_len && target[path_len] != '?' && target[path_len] != '#') path_len++;
  rq->path = target;
  rq->path_len = path_len;
  return 0;
}

/*
 * Parses the request at the start of p[0, n). Returns the length of its header (request line
 * through the blank line), 0 when it is not complete yet, or minus an HTTP status when it is
 * malformed or over the limits.
 */
static long parse_request(const char* p, size_t n, struct request* rq) {
  size_t limit = n < HEADER_LIMIT ? n : HEADER_LIMIT;
  size_t end = 0, first_lf = SIZE_MAX;
  for (size_t i = 0; i < limit;) {
    const char* nl = memchr(p + i, '\n', limit - i);
    if (!nl) break;
    size_t j = (size_t)(nl - p);
    if (first_lf == SIZE_MAX) first_lf = j;
    if (j + 1 < limit && p[j + 1] == '\n') {
      end = j + 2;
      break;
    }
    if (j + 2 < limit && p[j + 1] == '\r' && p[j + 2] == '\n') {
      end = j + 3;
      break;
    }
    i = j + 1;
  }
  if (!end) {
    /* Not complete: refuse what can never become a request instead of waiting for more. */
    size_t k = 0;
    while (k < limit && k < 32 && is_tchar((unsigned char)p[k])) k++;
    if (k < limit && k < 32 && (p[k] != ' ' || k == 0)) return -400;
    if (k == 32) return -400; /* no method is that long */
    if (n >= HEADER_LIMIT) return first_lf == SIZE_MAX ? -414 : -431;
    return 0;
  }
  memset(rq, 0, sizeof *rq);
  size_t line_len = first_lf;
  if (line_len && p[line_len - 1] == '\r') line_len--;
  int status = parse_request_line(rq, p, line_len);
  if (status) return -status;
  /* header fields: name ":" OWS value OWS */
  size_t pos = first_lf + 1;
  for (;;) {
    const char* nl = memchr(p + pos, '\n', end - pos);
    size_t len = (size_t)(nl - (p + pos));
    const char* line = p + pos;
    pos += len + 1;
    if (len && line[len - 1] == '\r') len--;
    if (len == 0) break;                                /* the blank line */
    if (line[0] == ' ' || line[0] == '\t') return -400; /* obsolete line folding */
    const char* colon = memchr(line, ':', len);
    if (!colon || colon == line) return -400;
    size_t name_len = (size_t)(colon - line);
    for (size_t i = 0; i < name_len; i++)
      if (!is_tchar((unsigned char)line[i])) return -400;
    const char* value = colon + 1;
    size_t value_len = len - name_len - 1;
    trim(&value, &value_len);
    for (size_t i = 0; i < value_len; i++)
      if ((unsigned char)value[i] < ' ' && value[i] != '\t') return -400;
    if (token_eq(line, name_len, "connection")) {
      parse_connection(rq, value, value_len);
    } else if (token_eq(line, name_len, "content-length")) {
      status = parse_length(rq, value, value_len);
      if (status) return -status;
    } else if (token_eq(line, name_len, "transfer-encoding")) {
      rq->has_transfer_encoding = true;
    }
  }
  return (long)end;
}

enum op { OP_GET, OP_INCREMENT, OP_GET_AND_INCREMENT, OP_RESET };

static const struct route {
  const char* path;
  enum op op;
} routes[] = {
    {"/get_counter", OP_GET},
    {"/increment_counter", OP_INCREMENT},
    {"/get_and_increment_counter", OP_GET_AND_INCREMENT},
    {"/reset_counter", OP_RESET},
};

static void handle(struct conn* c, const struct request* rq) {
  bool keep_alive = rq->http10 ? rq->conn_keep_alive && !rq->conn_close : !rq->conn_close;
  bool head = rq->method_len == 4 && memcmp(rq->method, "HEAD", 4) == 0;
  const struct route* route = NULL;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
    if (strlen(routes[i].path) == rq->path_len &&
        memcmp(rq->path, routes[i].path, rq->path_len) == 0)
      route = &routes[i];
  if (!route) {
    respond(c, 404, "not found\n", 0, keep_alive, rq->http10, head);
    return;
  }
  if (rq->method_len != 3 || memcmp(rq->method, "GET", 3) != 0) {
    respond(c, 405, "method not allowed\n", 0, keep_alive, rq->http10, head);
    return;
  }
  uint64_t value = 0;
  switch (route->op) {
    case OP_GET:
      value = counter;
      break;
    case OP_INCREMENT:
      value = ++counter;
      break;
    case OP_GET_AND_INCREMENT:
      value = counter++;
      break;
    case OP_RESET:
      value = counter = 0;
      break;
  }
  respond(c, 200, NULL, value, keep_alive, rq->http10, false);
}

/*
 * Answers the requests in buf[0, len) until it runs out of complete ones, a response closes the
 * connection, or OUTPUT_HIGH_WATER bytes of responses wait. Returns the bytes consumed.
 */
static size_t process(struct conn* c, const char* buf, size_t len) {
  size_t off = 0;
  while (off < len && !c->close_after && out_pending(c) < OUTPUT_HIGH_WATER) {
    if (c->body_left) {
      size_t k = len - off < c->body_left ? len - off : (size_t)c->body_left;
      off += k;
      c->body_left -= k;
      continue;
    }
    /* RFC 9112 2.2: ignore empty lines before a request line */
    if (buf[off] == '\n') {
      off++;
      continue;
    }
    if (buf[off] == '\r') {
      if (off + 1 == len) break; /* the \n may be in the next read */
      if (buf[off + 1] == '\n') {
        off += 2;
        continue;
      }
    }
    struct request rq;
    long r = parse_request(buf + off, len - off, &rq);
    if (r == 0) break;
    if (r < 0) {
      respond_error(c, (int)-r);
      break;
    }
    off += (size_t)r;
    c->partial_since = 0;
    if (rq.has_transfer_encoding) {
      respond_error(c, 501);
      break;
    }
    c->body_left = rq.content_length;
    handle(c, &rq);
  }
  return off;
}

/* ---- connections ---- */

static void set_interest(struct conn* c, uint32_t events) {
  if (c->events == events) return;
  struct epoll_event ev = {.events = events, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->events = events;
}

static void conn_close(struct conn* c) {
  close(c->fd); /* also removes it from the epoll set */
  if (c->prev)
    c->prev->next = c->next;
  else
    conns = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c->in);
  free(c->out);
  free(c);
}

/* Keeps what process() left of buf: a partial request, or requests held back by output. */
static bool keep_input(struct conn* c, const char* buf, size_t len) {
  if (len == 0) {
    c->in_len = 0;
    return true;
  }
  if (!c->in) {
    c->in = malloc(HEADER_LIMIT);
    if (!c->in) return false;
  }
  memmove(c->in, buf, len);
  c->in_len = len;
  return true;
}

/*
 * Answers buffered requests and writes responses until the input holds no complete request or
 * the socket is full: 1 done, 0 waiting for the peer to read, -1 the connection is gone.
 */
static int pump(struct conn* c) {
  for (;;) {
    if (c->in_len && !c->close_after && out_pending(c) < OUTPUT_HIGH_WATER) {
      size_t used = process(c, c->in, c->in_len);
      if (!keep_input(c, c->in + used, c->in_len - used)) return -1;
    }
    if (out_pending(c) == 0) return 1;
    int r = flush(c);
    if (r <= 0) return r;
  }
}

static void start_draining(struct conn* c) {
  shutdown(c->fd, SHUT_WR);
  c->draining = true;
  c->in_len = 0;
  c->deadline = now + LINGER_TIMEOUT;
  set_interest(c, EPOLLIN);
}

/* After the connection's state changed: close it, or pick what to wait for and until when. */
static void settle(struct conn* c, int pumped) {
  if (pumped < 0) {
    conn_close(c);
  } else if (pumped == 0) {
    c->deadline = now + WRITE_TIMEOUT;
    set_interest(c, EPOLLOUT);
  } else if (c->close_after) {
    if (c->peer_eof)
      conn_close(c);
    else
      start_draining(c);
  } else if (c->peer_eof) {
    conn_close(c);
  } else {
    if (c->in_len || c->body_left) {
      if (!c->partial_since) c->partial_since = now;
      c->deadline = c->partial_since + HEADER_TIMEOUT;
    } else {
      c->partial_since = 0;
      c->deadline = now + IDLE_TIMEOUT;
    }
    set_interest(c, EPOLLIN);
  }
}

static void on_readable_draining(struct conn* c) {
  ssize_t n = recv(c->fd, read_buf, sizeof read_buf, 0);
  if (n > 0) {
    c->drained += (size_t)n;
    if (c->drained > MAX_DRAIN) conn_close(c);
  } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    conn_close(c);
  }
}

static void on_conn_event(struct conn* c, uint32_t events) {
  if (events & EPOLLERR) {
    conn_close(c);
    return;
  }
  if (c->draining) {
    on_readable_draining(c);
    return;
  }
  if (out_pending(c)) { /* EPOLLOUT (or a hang-up): write what waits, then carry on */
    settle(c, pump(c));
    return;
  }
  /* Read into the connection's buffer after a partial request, else into the shared one. */
  char* dst = c->in_len ? c->in + c->in_len : read_buf;
  size_t room = c->in_len ? HEADER_LIMIT - c->in_len : sizeof read_buf;
  if (room == 0) { /* cannot happen: a full buffer without a request was answered 431 */
    conn_close(c);
    return;
  }
  ssize_t n = recv(c->fd, dst, room, 0);
  if (n > 0) {
    if (c->in_len) {
      c->in_len += (size_t)n;
    } else {
      size_t used = process(c, read_buf, (size_t)n);
      if (!keep_input(c, read_buf + used, (size_t)n - used)) {
        conn_close(c);
        return;
      }
    }
  } else if (n == 0) {
    c->peer_eof = true;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    conn_close(c);
    return;
  }
  settle(c, pump(c));
}

static void accept_connections(int lfd) {
  for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
        /* Out of descriptors: accept the connection with the spare one and close it, so the
         * listener does not stay readable forever. */
        static bool warned;
        if (!warned) {
          fprintf(stderr, "counter: out of file descriptors, dropping new connections\n");
          warned = true;
        }
        close(spare_fd);
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) close(fd);
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      return; /* EAGAIN, or an error that another wake-up will retry */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn* c = calloc(1, sizeof *c);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (!c || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      free(c);
      close(fd);
      continue;
    }
    c->fd = fd;
    c->events = ev.events;
    c->deadline = now + IDLE_TIMEOUT;
    c->next = conns;
    if (conns) conns->prev = c;
    conns = c;
  }
}

/* Once a second: close connections past their deadline (a half-sent request gets a 408). */
static void expire_connections(void) {
  for (struct conn *c = conns, *next; c; c = next) {
    next = c->next;
    if (now < c->deadline) continue;
    if (!c->draining && !c->close_after && out_pending(c) == 0 && (c->in_len || c->body_left)) {
      c->in_len = 0;
      c->body_left = 0;
      respond_error(c, 408);
      if (flush(c) == 1) {
        start_draining(c);
        continue;
      }
    }
    conn_close(c);
  }
}

/* "[ADDR:]PORT" → address; false with a message on stderr if it is not one. */
static bool parse_listen(const char* s, struct sockaddr_in* sa) {
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(INADDR_ANY);
  const char* colon = strrchr(s, ':');
  const char* port = s;
  if (colon) {
    char host[INET_ADDRSTRLEN];
    size_t n = (size_t)(colon - s);
    if (n >= sizeof host) goto bad;
    memcpy(host, s, n);
    host[n] = '\0';
    if (n > 0 && inet_pton(AF_INET, host, &sa->sin_addr) != 1) goto bad;
    port = colon + 1;
  }
  char* end;
  errno = 0;
  long p = strtol(port, &end, 10);
  if (errno || end == port || *end || p < 1 || p > 65535) goto bad;
  sa->sin_port = htons((uint16_t)p);
  return true;
bad:
  fprintf(stderr, "counter: %s: expected [ADDR:]PORT, such as 8080 or 127.0.0.1:8080\n", s);
  return false;
}

int main(int argc, char** argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: counter [[ADDR:]PORT]   (default: $PORT, else 8080)\n");
    return 2;
  }
  const char* listen_on = argc == 2 ? argv[1] : getenv("PORT");
  if (!listen_on || !*listen_on) listen_on = "8080";
  struct sockaddr_in sa;
  if (!parse_listen(listen_on, &sa)) return 2;

  /* As many connections as the hard limit allows. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  /* SIGTERM/SIGINT are blocked except inside epoll_pwait, so a stop is never missed. */
  signal(SIGPIPE, SIG_IGN);
  struct sigaction act = {.sa_handler = on_signal};
  sigemptyset(&act.sa_mask);
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  sigset_t block, wait_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &wait_mask);
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) {
    fprintf(stderr, "counter: socket: %s\n", strerror(errno));
    return 1;
  }
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr*)&sa, sizeof sa) < 0) {
    fprintf(stderr, "counter: bind %s: %s\n", listen_on, strerror(errno));
    return 1;
  }
  if (listen(lfd, SOMAXCONN) < 0) {
    fprintf(stderr, "counter: listen %s: %s\n", listen_on, strerror(errno));
    return 1;
  }
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    fprintf(stderr, "counter: epoll_create1: %s\n", strerror(errno));
    return 1;
  }
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
    fprintf(stderr, "counter: epoll_ctl: %s\n", strerror(errno));
    return 1;
  }
  spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

  char addr[INET_ADDRSTRLEN] = "";
  if (sa.sin_addr.s_addr != htonl(INADDR_ANY)) inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof addr);
  printf("counter listening on %s:%u\n", addr, (unsigned)ntohs(sa.sin_port));
  fflush(stdout);

  struct epoll_event events[MAX_EVENTS];
  time_t last_expiry = now = monotonic_now();
  update_date();
  while (!stop_signal) {
    int n = epoll_pwait(epfd, events, MAX_EVENTS, 1000, &wait_mask);
    if (n < 0 && errno != EINTR) {
      fprintf(stderr, "counter: epoll_pwait: %s\n", strerror(errno));
      return 1;
    }
    now = monotonic_now();
    update_date();
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == NULL)
        accept_connections(lfd);
      else
        on_conn_event(events[i].data.ptr, events[i].events);
    }
    if (now != last_expiry) {
      last_expiry = now;
      expire_connections();
    }
  }

  /* Stopping: give each connection what was already answered if it fits, then close. */
  close(lfd);
  while (conns) {
    if (out_pending(conns)) flush(conns);
    conn_close(conns);
  }
  close(epfd);
  printf("counter: %s, exiting\n", stop_signal == SIGTERM ? "SIGTERM" : "SIGINT");
  fflush(stdout);
  return 0;
}
