/* Resolving a flow step's credential references against the vault into the
 * RZ_CRED_<FIELD>=value environment a module receives.
 *
 * The whole list (pointer array and strings) is one sodium_malloc block, so
 * it is guarded while it lives and wiped by one sodium_free. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "flow/model.h"
#include "vault/vault_impl.h"

#define ENV_PREFIX "RZ_CRED_"

static char env_char(char c)
{
    if (c >= 'a' && c <= 'z')
        return (char)(c - 'a' + 'A');
    if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return c;
    return '_';
}

/* "api-key" -> "API_KEY" (written to `out`, strlen(field) bytes). */
static void env_name(const char *field, char *out)
{
    for (; *field; field++)
        *out++ = env_char(*field);
}

static bool same_env_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (env_char(*a) != env_char(*b))
            return false;
    return *a == *b;
}

/* Find the entry each reference names and check its type; fills idx. */
static int match_refs(const rz_vault *v, const rz__step *s, size_t *idx)
{
    for (size_t i = 0; i < s->n_creds; i++) {
        const rz__cred *c = &s->creds[i];
        const char *field = c->field ? c->field : "";
        if (!*field)
            return rz__error(RZ_ECREDENTIAL, "step '%s': a credential has an empty name", s->id);
        if (!c->credential_id || !c->type)
            return rz__error(RZ_ECREDENTIAL, "step '%s' credential '%s': malformed reference",
                             s->id, field);
        idx[i] = rz_vault_find(v, c->credential_id);
        if (idx[i] == RZ_NPOS)
            return rz__error(RZ_ENOENT, "step '%s' credential '%s': no vault entry '%s'",
                             s->id, field, c->credential_id);
        const char *type = v->entries[idx[i]].type;
        if (strcmp(type, c->type) != 0)
            return rz__error(RZ_ETYPE, "step '%s' credential '%s': vault entry '%s' has type "
                             "'%s', the reference asks for '%s'",
                             s->id, field, c->credential_id, type, c->type);
    }
    return RZ_OK;
}

/* Two fields that map to the same variable would silently shadow. */
static int check_names(const rz__step *s)
{
    for (size_t i = 0; i < s->n_creds; i++)
        for (size_t j = 0; j < i; j++)
            if (same_env_name(s->creds[i].field, s->creds[j].field))
                return rz__error(RZ_EDUPLICATE, "step '%s': credentials '%s' and '%s' would "
                                 "both be the same " ENV_PREFIX "variable", s->id,
                                 s->creds[j].field, s->creds[i].field);
    return RZ_OK;
}

/* Decrypt every value (kept in `vals`) and total the block size. */
static int reveal_all(const rz_vault *v, const rz__step *s, const size_t *idx,
                      rz_secret **vals, size_t *total)
{
    *total = (s->n_creds + 1) * sizeof(char *);
    for (size_t i = 0; i < s->n_creds; i++) {
        int rc = rz_vault_reveal(v, idx[i], &vals[i]);
        if (rc != RZ_OK) {
            char why[sizeof rz_error_last()->message];
            memcpy(why, rz_error_last()->message, sizeof why);
            return rz__error(rc, "step '%s' credential '%s': %s", s->id, s->creds[i].field, why);
        }
        size_t len = rz_secret_len(vals[i]);
        if (memchr(rz_secret_data(vals[i]), '\0', len))
            return rz__error(RZ_EINVAL, "step '%s' credential '%s': the value of vault entry "
                             "'%s' holds a NUL byte and cannot be passed in the environment",
                             s->id, s->creds[i].field, s->creds[i].credential_id);
        *total += strlen(ENV_PREFIX) + strlen(s->creds[i].field) + 1 + len + 1;
    }
    return RZ_OK;
}

static char **build_env(const rz__step *s, rz_secret **vals, size_t total)
{
    /* Rounded so the pointer array at the start stays aligned (sodium_malloc
     * ends the block at its guard page). */
    char **env = sodium_malloc((total + 15) & ~(size_t)15);
    if (!env)
        return NULL;
    char *p = (char *)(env + s->n_creds + 1);
    for (size_t i = 0; i < s->n_creds; i++) {
        env[i] = p;
        size_t fl = strlen(s->creds[i].field), vl = rz_secret_len(vals[i]);
        memcpy(p, ENV_PREFIX, strlen(ENV_PREFIX));
        p += strlen(ENV_PREFIX);
        env_name(s->creds[i].field, p);
        p += fl;
        *p++ = '=';
        memcpy(p, rz_secret_data(vals[i]), vl);
        p += vl;
        *p++ = '\0';
    }
    env[s->n_creds] = NULL;
    return env;
}

int rz_vault_resolve_step(const rz_vault *v, const rz_flow *flow, size_t step,
                          char ***env_out)
{
    *env_out = NULL;
    if (!v || !flow)
        return rz__error(RZ_EINVAL, "no vault or flow");
    if (!v->keys)
        return rz__error(RZ_ESTATE, "the vault is locked");
    if (step >= flow->n_steps)
        return rz__error(RZ_EINVAL, "no step %zu in flow '%s'", step,
                         flow->name ? flow->name : "");
    const rz__step *s = &flow->steps[step];
    size_t n = s->n_creds;
    size_t *idx = rz__calloc(n + 1, sizeof *idx);
    rz_secret **vals = rz__calloc(n + 1, sizeof *vals);
    int rc = (!idx || !vals) ? rz__error(RZ_ENOMEM, "out of memory") : RZ_OK;
    size_t total = 0;
    if (rc == RZ_OK)
        rc = match_refs(v, s, idx);
    if (rc == RZ_OK)
        rc = check_names(s);
    if (rc == RZ_OK)
        rc = reveal_all(v, s, idx, vals, &total);
    if (rc == RZ_OK && !(*env_out = build_env(s, vals, total)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; vals && i < n; i++)
        rz_secret_free(vals[i]);
    free(vals);
    free(idx);
    return rc;
}

void rz_vault_env_free(char **env)
{
    sodium_free(env);
}

size_t rz_vault_flow_references(const rz_flow *flow)
{
    size_t n = 0;
    for (size_t i = 0; flow && i < flow->n_steps; i++)
        n += flow->steps[i].n_creds;
    return n;
}
