/* idempotency/memory.c — the in-memory store: a hash table under one mutex (each operation holds
 * it for a few hundred nanoseconds), bounded by entries and bytes, reclaimed incrementally.
 *
 * Fairness (CONTRACT section 4): every entry belongs to a client (its address, or the
 * principal the service names), and a client holds at most a share of the entries and of the
 * bytes. Past its share, that client's own oldest completed keys make room: their responses are
 * dropped first (the key stays, as a record of its status only), then the keys themselves. No
 * client can take room from another, and a key the store accepted never runs its handler twice
 * within the TTL because of a full store: when a response cannot be kept, its status is. */
#include "idempotency/idem_internal.h"

enum { SWEEP_PER_CALL = 4, SWEEP_WHEN_FULL = 256, SHARE_DIVISOR = 16 };

typedef struct mem_client mem_client;

typedef struct mem_entry {
    struct mem_entry *next;          /* hash chain */
    struct mem_entry *older, *newer; /* the client's completed entries, oldest first */
    mem_client *client;
    o11y_idem_key key;
    uint8_t fp[O11Y_IDEM_FP_BYTES];
    bool completed;
    uint64_t token;
    int64_t expires_ms; /* the lease while locked, the TTL once completed */
    char *blob;         /* the record, or its status alone once the response was dropped */
    size_t blob_len;
} mem_entry;

struct mem_client {
    mem_client *next; /* hash chain */
    uint64_t id;
    size_t entries, bytes;
    mem_entry *oldest, *newest; /* completed entries */
};

typedef struct mem_store {
    o11y_idem_store *store; /* for its error slot */
    pthread_mutex_t lock;
    mem_entry **buckets;
    size_t n_buckets; /* a power of two */
    mem_client **client_buckets;
    size_t n_client_buckets; /* a power of two */
    size_t n_entries, bytes, max_entries, max_bytes, sweep_cursor;
    size_t client_entries, client_bytes; /* each client's share */
} mem_store;

static uint64_t key_hash(const o11y_idem_key *k)
{
    uint64_t h = o11y__fnv1a(O11Y__FNV_BASIS, k->id, strlen(k->id));
    return h ^ (h >> 29);
}

/*=== MARK: clients ===*/

static mem_client **client_slot(mem_store *m, uint64_t id)
{
    mem_client **p = &m->client_buckets[(id ^ (id >> 31)) & (m->n_client_buckets - 1)];
    while (*p && (*p)->id != id)
        p = &(*p)->next;
    return p;
}

static mem_client *client_get(mem_store *m, uint64_t id)
{
    mem_client **p = client_slot(m, id);
    if (!*p && (*p = o11y__calloc(1, sizeof **p)))
        (*p)->id = id;
    return *p;
}

static void client_put(mem_store *m, mem_client *c)
{
    if (c->entries)
        return;
    mem_client **p = client_slot(m, c->id);
    *p = c->next;
    o11y__free(c);
}

static void completed_unlink(mem_entry *e)
{
    mem_client *c = e->client;
    if (e->older)
        e->older->newer = e->newer;
    else if (c->oldest == e)
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else if (c->newest == e)
        c->newest = e->older;
    e->older = e->newer = NULL;
}

static void completed_append(mem_entry *e)
{
    mem_client *c = e->client;
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
}

/*=== MARK: entries ===*/

static mem_entry **find(mem_store *m, const o11y_idem_key *k)
{
    mem_entry **p = &m->buckets[key_hash(k) & (m->n_buckets - 1)];
    while (*p && strcmp((*p)->key.id, k->id) != 0)
        p = &(*p)->next;
    return p;
}

/* Unlinks e (at *where in its chain) and frees it, with its client's accounting. */
static void entry_remove(mem_store *m, mem_entry **where, mem_entry *e)
{
    *where = e->next;
    mem_client *c = e->client;
    if (e->completed)
        completed_unlink(e);
    m->bytes -= e->blob_len;
    m->n_entries--;
    c->bytes -= e->blob_len;
    c->entries--;
    o11y__free(e->blob);
    o11y__free(e);
    client_put(m, c);
}

/* Keeps only the record's status (its first two bytes, see idem_internal.h). */
static void entry_drop_response(mem_store *m, mem_entry *e)
{
    if (e->blob_len <= O11Y_IDEM_STATUS_BYTES)
        return;
    size_t freed = e->blob_len - O11Y_IDEM_STATUS_BYTES;
    char *small = o11y__realloc(e->blob, O11Y_IDEM_STATUS_BYTES);
    if (small)
        e->blob = small;
    e->blob_len = O11Y_IDEM_STATUS_BYTES;
    m->bytes -= freed;
    e->client->bytes -= freed;
}

/* Removes expired entries from n buckets, starting where the last sweep stopped. */
static void sweep(mem_store *m, size_t n, int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        size_t b = m->sweep_cursor++ & (m->n_buckets - 1);
        for (mem_entry **p = &m->buckets[b]; *p;) {
            mem_entry *e = *p;
            if (e->expires_ms <= now)
                entry_remove(m, p, e);
            else
                p = &e->next;
        }
    }
}

/* Makes room for one more entry of client c within its share: its oldest completed keys go.
 * False when every key it holds is still in flight. */
static bool client_make_room(mem_store *m, mem_client *c)
{
    while (c->entries >= m->client_entries) {
        mem_entry *victim = c->oldest;
        if (!victim)
            return false;
        entry_remove(m, find(m, &victim->key), victim);
    }
    return true;
}

static o11y_idem_result mem_begin(void *impl, const o11y_idem_key *k,
                                  const uint8_t fp[O11Y_IDEM_FP_BYTES], int64_t now,
                                  int64_t lease_ms, uint64_t *token, char **blob, size_t *blob_len)
{
    mem_store *m = impl;
    o11y_idem_result r;
    pthread_mutex_lock(&m->lock);
    sweep(m, SWEEP_PER_CALL, now);
    mem_entry **p = find(m, k);
    if (*p && (*p)->expires_ms <= now) /* a passed TTL or lease: the key is new again */
        entry_remove(m, p, *p);
    mem_entry *e = *p;
    if (e) {
        if (memcmp(e->fp, fp, O11Y_IDEM_FP_BYTES) != 0) {
            r = O11Y_IDEM_REUSED;
        } else if (!e->completed) {
            r = O11Y_IDEM_IN_USE;
        } else {
            *blob = o11y__malloc(e->blob_len);
            *blob_len = e->blob_len;
            r = *blob ? O11Y_IDEM_REPLAY : O11Y_IDEM_STORE_ERROR;
            if (*blob)
                memcpy(*blob, e->blob, e->blob_len);
        }
        pthread_mutex_unlock(&m->lock);
        return r;
    }
    mem_client *c = client_get(m, k->client);
    if (!c) {
        pthread_mutex_unlock(&m->lock);
        o11y_idem_store_set_error(m->store, "memory store: out of memory");
        return O11Y_IDEM_STORE_ERROR;
    }
    if (!client_make_room(m, c)) {
        client_put(m, c);
        pthread_mutex_unlock(&m->lock);
        o11y_idem_store_set_error(m->store, "memory store: this client has %zu keys in flight",
                                  m->client_entries);
        return O11Y_IDEM_FULL;
    }
    if (m->n_entries >= m->max_entries)
        sweep(m, SWEEP_WHEN_FULL, now);
    if (m->n_entries >= m->max_entries || !(e = o11y__calloc(1, sizeof *e))) {
        client_put(m, c);
        pthread_mutex_unlock(&m->lock);
        o11y_idem_store_set_error(m->store, "memory store full: %zu live keys", m->max_entries);
        return O11Y_IDEM_FULL;
    }
    e->key = *k;
    e->client = c;
    memcpy(e->fp, fp, O11Y_IDEM_FP_BYTES);
    e->token = *token = o11y_idem_token();
    e->expires_ms = now + lease_ms;
    p = find(m, k); /* room-making may have changed the chain */
    e->next = *p;
    *p = e;
    m->n_entries++;
    c->entries++;
    pthread_mutex_unlock(&m->lock);
    return O11Y_IDEM_NEW;
}

static mem_entry *held(mem_store *m, const o11y_idem_key *k, uint64_t token, mem_entry ***where)
{
    mem_entry **p = find(m, k);
    *where = p;
    return *p && (*p)->token == token && !(*p)->completed ? *p : NULL;
}

/* Room for len more bytes of client c: its oldest completed responses are dropped (their
 * statuses stay) until its share and the whole budget have room. */
static bool bytes_room(mem_store *m, mem_client *c, size_t len)
{
    if (len > m->client_bytes)
        return false;
    for (mem_entry *old = c->oldest;
         old && (c->bytes + len > m->client_bytes || m->bytes + len > m->max_bytes);
         old = old->newer)
        entry_drop_response(m, old);
    return c->bytes + len <= m->client_bytes && m->bytes + len <= m->max_bytes;
}

static o11y_idem_stored mem_complete(void *impl, const o11y_idem_key *k, uint64_t token,
                                     const uint8_t fp[O11Y_IDEM_FP_BYTES], const char *blob,
                                     size_t blob_len, int64_t now, int64_t expires_ms)
{
    (void)fp, (void)now;
    mem_store *m = impl;
    pthread_mutex_lock(&m->lock);
    mem_entry **p, *e = held(m, k, token, &p);
    if (!e || blob_len < O11Y_IDEM_STATUS_BYTES) {
        pthread_mutex_unlock(&m->lock);
        o11y_idem_store_set_error(m->store, "memory store: the key's lease had ended");
        return O11Y_IDEM_NOT_STORED;
    }
    mem_client *c = e->client;
    /* The whole record when there is room, else its status alone: never nothing. */
    size_t keep = bytes_room(m, c, blob_len) ? blob_len : O11Y_IDEM_STATUS_BYTES;
    char *copy = o11y__malloc(keep);
    if (!copy && keep > O11Y_IDEM_STATUS_BYTES)
        copy = o11y__malloc(keep = O11Y_IDEM_STATUS_BYTES);
    o11y_idem_stored result = O11Y_IDEM_NOT_STORED;
    if (copy) {
        result = keep < blob_len ? O11Y_IDEM_STATUS_ONLY : O11Y_IDEM_STORED;
        memcpy(copy, blob, keep);
        e->blob = copy;
        e->blob_len = keep;
        e->completed = true;
        e->expires_ms = expires_ms;
        m->bytes += keep;
        c->bytes += keep;
        completed_append(e);
        if (keep < blob_len)
            o11y_idem_store_set_error(m->store,
                                      "memory store: response of %zu bytes not kept (client"
                                      " share %zu bytes); its status is",
                                      blob_len, m->client_bytes);
    } else {
        o11y_idem_store_set_error(m->store, "memory store: out of memory");
    }
    pthread_mutex_unlock(&m->lock);
    return result;
}

static void mem_release(void *impl, const o11y_idem_key *k, uint64_t token)
{
    mem_store *m = impl;
    pthread_mutex_lock(&m->lock);
    mem_entry **p, *e = held(m, k, token, &p);
    if (e)
        entry_remove(m, p, e);
    pthread_mutex_unlock(&m->lock);
}

static void mem_destroy(void *impl)
{
    mem_store *m = impl;
    for (size_t i = 0; i < m->n_buckets; i++)
        while (m->buckets[i])
            entry_remove(m, &m->buckets[i], m->buckets[i]);
    pthread_mutex_destroy(&m->lock);
    o11y__free(m->client_buckets);
    o11y__free(m->buckets);
    o11y__free(m);
}

static const o11y_idem_store_ops mem_ops = {mem_begin, mem_complete, mem_release, mem_destroy};

o11y_status o11y_idem_store_memory(const o11y_idem_memory_config *cfg, o11y_idem_store **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    size_t max_entries = cfg && cfg->max_entries ? cfg->max_entries : 100000;
    size_t max_bytes = cfg && cfg->max_bytes ? cfg->max_bytes : (size_t)64 << 20;
    size_t client_entries =
        cfg && cfg->max_client_entries ? cfg->max_client_entries : max_entries / SHARE_DIVISOR;
    size_t client_bytes =
        cfg && cfg->max_client_bytes ? cfg->max_client_bytes : max_bytes / SHARE_DIVISOR;
    if (max_entries > ((size_t)1 << 28) || client_entries > max_entries || client_bytes > max_bytes)
        return O11Y_EINVAL;
    mem_store *m = o11y__calloc(1, sizeof *m);
    if (!m)
        return O11Y_ENOMEM;
    m->n_buckets = 16;
    while (m->n_buckets < max_entries && m->n_buckets < ((size_t)1 << 20))
        m->n_buckets <<= 1;
    m->n_client_buckets = m->n_buckets / 4 < 1024 ? 1024 : m->n_buckets / 4;
    m->buckets = o11y__calloc(m->n_buckets, sizeof *m->buckets);
    m->client_buckets = o11y__calloc(m->n_client_buckets, sizeof *m->client_buckets);
    if (!m->buckets || !m->client_buckets) {
        o11y__free(m->buckets);
        o11y__free(m->client_buckets);
        o11y__free(m);
        return O11Y_ENOMEM;
    }
    m->max_entries = max_entries;
    m->max_bytes = max_bytes;
    m->client_entries = client_entries ? client_entries : 1;
    m->client_bytes = client_bytes ? client_bytes : O11Y_IDEM_STATUS_BYTES;
    pthread_mutex_init(&m->lock, NULL);
    o11y_status st = o11y_idem_store_create(&mem_ops, m, out);
    if (st != O11Y_OK) {
        mem_destroy(m);
        return st;
    }
    m->store = *out;
    return O11Y_OK;
}
