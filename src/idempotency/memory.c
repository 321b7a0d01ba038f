/* idempotency/memory.c — the in-memory store: a hash table under one mutex (each operation holds
 * it for a few hundred nanoseconds), bounded by entries and bytes, reclaimed incrementally. */
#include "idempotency/idem_internal.h"

enum { SWEEP_PER_CALL = 4, SWEEP_WHEN_FULL = 256 };

typedef struct mem_entry {
    struct mem_entry *next;
    o11y__idem_key key;
    uint8_t fp[O11Y__IDEM_FP];
    bool completed;
    uint64_t token;
    int64_t expires_ms; /* the lease while locked, the TTL once completed */
    char *blob;
    size_t blob_len;
} mem_entry;

typedef struct mem_store {
    o11y_idem_store base;
    pthread_mutex_t lock;
    mem_entry **buckets;
    size_t n_buckets; /* a power of two */
    size_t n_entries, bytes, max_entries, max_bytes, sweep_cursor;
} mem_store;

static uint64_t key_hash(const o11y__idem_key *k)
{
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a over the whole id */
    for (const char *p = k->id; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001B3ull;
    return h ^ (h >> 29);
}

static void entry_free(mem_store *m, mem_entry *e)
{
    m->bytes -= e->blob_len;
    m->n_entries--;
    o11y__free(e->blob);
    o11y__free(e);
}

/* Removes expired entries from n buckets, starting where the last sweep stopped. */
static void sweep(mem_store *m, size_t n, int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        size_t b = m->sweep_cursor++ & (m->n_buckets - 1);
        for (mem_entry **p = &m->buckets[b]; *p;) {
            mem_entry *e = *p;
            if (e->expires_ms <= now) {
                *p = e->next;
                entry_free(m, e);
            } else {
                p = &e->next;
            }
        }
    }
}

static mem_entry **find(mem_store *m, const o11y__idem_key *k)
{
    mem_entry **p = &m->buckets[key_hash(k) & (m->n_buckets - 1)];
    while (*p && strcmp((*p)->key.id, k->id) != 0)
        p = &(*p)->next;
    return p;
}

static o11y__idem_result mem_begin(o11y_idem_store *s, const o11y__idem_key *k,
                                   const uint8_t fp[O11Y__IDEM_FP], int64_t now, int64_t lease_ms,
                                   uint64_t *token, char **blob, size_t *blob_len)
{
    mem_store *m = (mem_store *)s;
    o11y__idem_result r;
    pthread_mutex_lock(&m->lock);
    sweep(m, SWEEP_PER_CALL, now);
    mem_entry **p = find(m, k);
    if (*p && (*p)->expires_ms <= now) { /* a passed TTL or lease: the key is new again */
        mem_entry *e = *p;
        *p = e->next;
        entry_free(m, e);
    }
    mem_entry *e = *p;
    if (e) {
        if (memcmp(e->fp, fp, O11Y__IDEM_FP) != 0) {
            r = O11Y__IDEM_REUSED;
        } else if (!e->completed) {
            r = O11Y__IDEM_IN_USE;
        } else {
            *blob = o11y__malloc(e->blob_len);
            *blob_len = e->blob_len;
            r = *blob ? O11Y__IDEM_REPLAY : O11Y__IDEM_STORE_ERROR;
            if (*blob)
                memcpy(*blob, e->blob, e->blob_len);
        }
        pthread_mutex_unlock(&m->lock);
        return r;
    }
    if (m->n_entries >= m->max_entries)
        sweep(m, SWEEP_WHEN_FULL, now);
    if (m->n_entries >= m->max_entries || !(e = o11y__calloc(1, sizeof *e))) {
        pthread_mutex_unlock(&m->lock);
        o11y__idem_store_error(s, "memory store full: %zu live keys", m->max_entries);
        return O11Y__IDEM_FULL;
    }
    e->key = *k;
    memcpy(e->fp, fp, O11Y__IDEM_FP);
    e->token = *token = o11y__idem_token();
    e->expires_ms = now + lease_ms;
    p = find(m, k); /* the sweep may have changed the chain */
    e->next = *p;
    *p = e;
    m->n_entries++;
    pthread_mutex_unlock(&m->lock);
    return O11Y__IDEM_NEW;
}

static mem_entry *held(mem_store *m, const o11y__idem_key *k, uint64_t token, mem_entry ***where)
{
    mem_entry **p = find(m, k);
    *where = p;
    return *p && (*p)->token == token && !(*p)->completed ? *p : NULL;
}

static bool mem_complete(o11y_idem_store *s, const o11y__idem_key *k, uint64_t token,
                         const uint8_t fp[O11Y__IDEM_FP], const char *blob, size_t blob_len,
                         int64_t now, int64_t expires_ms)
{
    (void)fp, (void)now;
    mem_store *m = (mem_store *)s;
    bool ok = false;
    pthread_mutex_lock(&m->lock);
    mem_entry **p, *e = held(m, k, token, &p);
    char *copy = e && m->bytes + blob_len <= m->max_bytes ? o11y__malloc(blob_len ? blob_len : 1)
                                                           : NULL;
    if (copy) {
        memcpy(copy, blob, blob_len);
        e->blob = copy;
        e->blob_len = blob_len;
        e->completed = true;
        e->expires_ms = expires_ms;
        m->bytes += blob_len;
        ok = true;
    } else if (e) { /* no room for the response: free the key rather than hold it forever */
        *p = e->next;
        entry_free(m, e);
        o11y__idem_store_error(s, "memory store over its byte budget (%zu)", m->max_bytes);
    }
    pthread_mutex_unlock(&m->lock);
    return ok;
}

static void mem_release(o11y_idem_store *s, const o11y__idem_key *k, uint64_t token)
{
    mem_store *m = (mem_store *)s;
    pthread_mutex_lock(&m->lock);
    mem_entry **p, *e = held(m, k, token, &p);
    if (e) {
        *p = e->next;
        entry_free(m, e);
    }
    pthread_mutex_unlock(&m->lock);
}

static void mem_destroy(o11y_idem_store *s)
{
    mem_store *m = (mem_store *)s;
    for (size_t i = 0; i < m->n_buckets; i++) {
        while (m->buckets[i]) {
            mem_entry *e = m->buckets[i];
            m->buckets[i] = e->next;
            entry_free(m, e);
        }
    }
    pthread_mutex_destroy(&m->lock);
    o11y__free(m->buckets);
    o11y__free(m);
}

static const o11y__idem_store_ops mem_ops = {mem_begin, mem_complete, mem_release, mem_destroy};

o11y_status o11y_idem_store_memory(const o11y_idem_memory_config *cfg, o11y_idem_store **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    size_t max_entries = cfg && cfg->max_entries ? cfg->max_entries : 100000;
    size_t max_bytes = cfg && cfg->max_bytes ? cfg->max_bytes : (size_t)64 << 20;
    if (max_entries > ((size_t)1 << 28))
        return O11Y_EINVAL;
    mem_store *m = o11y__calloc(1, sizeof *m);
    if (!m)
        return O11Y_ENOMEM;
    m->n_buckets = 16;
    while (m->n_buckets < max_entries && m->n_buckets < ((size_t)1 << 20))
        m->n_buckets <<= 1;
    m->buckets = o11y__calloc(m->n_buckets, sizeof *m->buckets);
    if (!m->buckets) {
        o11y__free(m);
        return O11Y_ENOMEM;
    }
    m->max_entries = max_entries;
    m->max_bytes = max_bytes;
    pthread_mutex_init(&m->lock, NULL);
    o11y__idem_store_init(&m->base, &mem_ops);
    *out = &m->base;
    return O11Y_OK;
}
