/* Iterative Tarjan over a dependency graph, the shortest cycle through a
 * component's first node, and the cycle's text.
 *
 * Tarjan emits a component only after every component it reaches; reaching
 * means "depends on" here, so the emission order puts dependencies first. */
#include <stdlib.h>

#include "common/graph.h"

typedef struct tarjan {
    const rz__graph *g;
    size_t *index, *low, *stack, *call, *edge, *comp, *parent, *queue, *cycle;
    unsigned char *on;
    size_t n_stack, n_call, next_index, n_comp, n_order;
    size_t *order;
    rz__cycle_fn *on_cycle;
    void *ud;
} tarjan;

static bool depends_on(const rz__graph *g, size_t u, size_t p)
{
    for (size_t k = g->off[u]; k < g->off[u + 1]; k++)
        if (g->dep[k] == p)
            return true;
    return false;
}

/* BFS from `root` along dependency edges inside its component until an
 * edge leads back to root; then root -> last -> ... -> root in the order
 * things run. Returns the cycle's length (root counted once). */
static size_t shortest_cycle(tarjan *t, size_t root)
{
    const rz__graph *g = t->g;
    size_t head = 0, tail = 0, last = RZ_NPOS;
    t->queue[tail++] = root;
    t->parent[root] = root;
    while (head < tail && last == RZ_NPOS) {
        size_t u = t->queue[head++];
        for (size_t k = g->off[u]; k < g->off[u + 1]; k++) {
            size_t p = g->dep[k];
            if (p == root) {
                last = u;
                break;
            }
            if (t->comp[p] != t->comp[root] || t->parent[p] != RZ_NPOS)
                continue;
            t->parent[p] = u;
            t->queue[tail++] = p;
        }
    }
    size_t len = 0;
    t->cycle[len++] = root;
    for (size_t u = last; u != root; u = t->parent[u])
        t->cycle[len++] = u;
    return len;
}

/* Pop the component rooted at `u` into the order; report it if a cycle. */
static void pop_component(tarjan *t, size_t u)
{
    size_t first = RZ_NPOS, size = 0, w;
    do {
        w = t->stack[--t->n_stack];
        t->on[w] = 0;
        t->comp[w] = t->n_comp;
        t->order[t->n_order++] = w;
        if (w < first)
            first = w;
        size++;
    } while (w != u);
    if (size > 1 || depends_on(t->g, u, u)) {
        size_t len = shortest_cycle(t, first);
        t->on_cycle(t->ud, t->order + t->n_order - size, size, t->cycle, len);
    }
    t->n_comp++;
}

static void visit(tarjan *t, size_t w)
{
    t->index[w] = t->low[w] = t->next_index++;
    t->stack[t->n_stack++] = w;
    t->on[w] = 1;
    t->call[t->n_call] = w;
    t->edge[t->n_call] = t->g->off[w];
    t->n_call++;
}

static void run_from(tarjan *t, size_t root)
{
    const rz__graph *g = t->g;
    visit(t, root);
    while (t->n_call) {
        size_t u = t->call[t->n_call - 1];
        if (t->edge[t->n_call - 1] < g->off[u + 1]) {
            size_t w = g->dep[t->edge[t->n_call - 1]++];
            if (t->index[w] == RZ_NPOS)
                visit(t, w);
            else if (t->on[w] && t->index[w] < t->low[u])
                t->low[u] = t->index[w];
            continue;
        }
        if (t->low[u] == t->index[u])
            pop_component(t, u);
        if (--t->n_call) {
            size_t p = t->call[t->n_call - 1];
            if (t->low[u] < t->low[p])
                t->low[p] = t->low[u];
        }
    }
}

int rz__graph_order(const rz__graph *g, size_t *order, rz__cycle_fn *on_cycle, void *ud)
{
    size_t n = g->n, n1 = n ? n : 1;
    tarjan t = {.g = g, .order = order, .on_cycle = on_cycle, .ud = ud};
    size_t **arrays[] = {&t.index, &t.low, &t.stack, &t.call, &t.edge, &t.comp,
                         &t.parent, &t.queue, &t.cycle};
    bool ok = (t.on = rz__calloc(n1, 1)) != NULL;
    for (size_t i = 0; i < RZ_ARRAY_LEN(arrays); i++)
        ok = (*arrays[i] = rz__malloc(n1 * sizeof **arrays[i])) && ok;
    if (ok) {
        for (size_t i = 0; i < n; i++)
            t.index[i] = t.comp[i] = t.parent[i] = RZ_NPOS;
        for (size_t i = 0; i < n; i++)
            if (t.index[i] == RZ_NPOS)
                run_from(&t, i);
    }
    for (size_t i = 0; i < RZ_ARRAY_LEN(arrays); i++)
        free(*arrays[i]);
    free(t.on);
    return ok ? RZ_OK : RZ_ENOMEM;
}

void rz__cycle_text(rz__buf *b, const size_t *cycle, size_t n,
                    const char *(*name)(const void *ud, size_t node), const void *ud)
{
    const size_t max = RZ__CYCLE_TEXT_NAMES, half = max / 2;
    size_t cut = n > max ? n - max : 0;
    rz__buf_puts(b, name(ud, cycle[0]));
    for (size_t k = 1; k < n; k++) {
        if (cut && k == half)
            rz__buf_printf(b, " -> ... (%zu more)", cut);
        if (cut && k >= half && k < half + cut)
            continue;
        rz__buf_printf(b, " -> %s", name(ud, cycle[k]));
    }
    rz__buf_printf(b, " -> %s", name(ud, cycle[0]));
}
