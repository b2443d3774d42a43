/* rhizos-node's config.toml reader (server/node/config.c): a good file,
 * every malformed line kind with its FILE:LINE, size limit, unknown
 * sections and keys, defaults, and what `init` writes reading back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "node.h"

static int parse(node_config *c, const char *text, char *err, size_t n)
{
    node_config_defaults(c);
    return node_config_parse(c, text, strlen(text), "node.toml", err, n);
}

static void defaults(void **state)
{
    (void)state;
    node_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, "", err, sizeof err), 0);
    assert_null(c.orchestrator_url);
    assert_null(c.modules);
    assert_int_equal(c.sandbox, 1);
    assert_true(c.heartbeat_s == 5);
    assert_int_equal(c.gpu_hour_micros, 500000);
    assert_int_equal(c.cpu_hour_micros, 20000);
    assert_int_equal(c.memory_gb_hour_micros, 10000);
    assert_int_equal(c.max_concurrent_jobs, 4);
    assert_int_equal(c.max_memory_mb, 0);
    assert_int_equal(c.max_scratch_mb, RZ_ATTEMPT_DEFAULT_MAX_SCRATCH_MB);
    assert_int_equal((uint64_t)c.max_file_mb << 20, RZ_ATTEMPT_DEFAULT_MAX_FILE);
    assert_int_equal((uint64_t)c.max_job_files_mb << 20, RZ_ATTEMPT_DEFAULT_MAX_FILES);
    assert_int_equal(c.step_uid_first, 0);
    assert_null(c.orchestrator_key);
    assert_int_equal(c.n_labels, 0);
    node_config_free(&c);
}

static void good_file(void **state)
{
    (void)state;
    const char *text =
        "# a node\n"
        "\n"
        "[orchestrator]\n"
        "url = \"http://10.0.0.1:8080\"   # the network\n"
        "key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n"
        "ca_file = \"/etc/rhizos/ca.pem\"\n"
        "[node]\r\n"
        "sandbox = false\n"
        "heartbeat_s = 2.5\n"
        "modules = '/srv/mods:/opt/m'\n"
        "  [pricing]  \n"
        "gpu_hour_micros = 1_250\n"
        "cpu_hour_micros = +3\n"
        "memory_gb_hour_micros = 0\n"
        "[limits]\n"
        "max_concurrent_jobs = 8\n"
        "max_memory_mb = 32768\n"
        "max_scratch_mb = 4096\n"
        "step_uid_first = 2000000000\n"
        "step_uid_count = 16\n"
        "[labels]\n"
        "region = \"eu-west\"\n"
        "tier = \"gold \\\"a\\\"\\t\\\\\"\n";
    node_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, text, err, sizeof err), 0);
    assert_string_equal(c.orchestrator_url, "http://10.0.0.1:8080");
    assert_string_equal(c.modules, "/srv/mods:/opt/m");
    assert_int_equal(c.sandbox, 0);
    assert_true(c.heartbeat_s == 2.5);
    assert_int_equal(c.gpu_hour_micros, 1250);
    assert_int_equal(c.cpu_hour_micros, 3);
    assert_int_equal(c.memory_gb_hour_micros, 0);
    assert_int_equal(c.max_concurrent_jobs, 8);
    assert_int_equal(c.max_memory_mb, 32768);
    assert_int_equal(c.max_scratch_mb, 4096);
    assert_int_equal(c.step_uid_first, 2000000000u);
    assert_int_equal(c.step_uid_count, 16);
    assert_string_equal(c.orchestrator_key,
                        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    assert_string_equal(c.orchestrator_ca_file, "/etc/rhizos/ca.pem");
    assert_int_equal(c.n_labels, 2);
    assert_string_equal(c.label_keys[0], "region");
    assert_string_equal(c.label_values[0], "eu-west");
    assert_string_equal(c.label_keys[1], "tier");
    assert_string_equal(c.label_values[1], "gold \"a\"\t\\");
    node_config_free(&c);
}

/* An integer is accepted where a float is wanted, not the reverse. */
static void number_kinds(void **state)
{
    (void)state;
    node_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, "[node]\nheartbeat_s = 3\n", err, sizeof err), 0);
    assert_true(c.heartbeat_s == 3);
    node_config_free(&c);
    assert_int_equal(parse(&c, "[node]\nheartbeat_s = 1e1\n", err, sizeof err), 0);
    assert_true(c.heartbeat_s == 10);
    node_config_free(&c);
}

typedef struct bad_case {
    const char *text;
    const char *want;     /* the whole "FILE:LINE: message" prefix */
} bad_case;

static const bad_case bad[] = {
    { "[limits\n", "node.toml:1: expected ']' after the section name" },
    { "\n[]\n", "node.toml:2: empty section name" },
    { "[ ]\n", "node.toml:1: empty section name" },
    { "[a b]\n", "node.toml:1: expected ']'" },
    { "[limits] x\n", "node.toml:1: unexpected text after the section header" },
    { "[nodes]\n", "node.toml:1: unknown section [nodes]" },
    { "[limits]\n[limits]\n", "node.toml:2: section [limits] appears twice" },
    { "url = \"http://x\"\n", "node.toml:1: key 'url' outside a [section]" },
    { "[node]\njust words\n", "node.toml:2: expected '=' after the key" },
    { "[node]\n= 1\n", "node.toml:2: missing key before '='" },
    { "[node]\n$ = 1\n", "node.toml:2: expected key = value" },
    { "[node]\na.b = 1\n", "node.toml:2: dotted keys are not supported" },
    { "[node]\nsandbox =\n", "node.toml:2: missing value after '='" },
    { "[node]\nsandbox = # none\n", "node.toml:2: missing value after '='" },
    { "[orchestrator]\nurl = \"http://x\n", "node.toml:2: unterminated string" },
    { "[orchestrator]\nurl = 'http://x\n", "node.toml:2: unterminated string" },
    { "[orchestrator]\nurl = \"a\\qb\"\n", "node.toml:2: unsupported escape" },
    { "[orchestrator]\nurl = \"\"\"x\"\"\"\n", "node.toml:2: multi-line strings" },
    { "[orchestrator]\nurl = \"http://x\" y\n", "node.toml:2: unexpected text after the value" },
    { "[orchestrator]\nurl = \"ftp://x\"\n", "node.toml:2: url must start with http:// or https://" },
    { "[orchestrator]\nurl = 5\n", "node.toml:2: url must be a string" },
    { "[pricing]\ngpu_hour_micros = 12abc\n", "node.toml:2: malformed value" },
    { "[pricing]\ngpu_hour_micros = 1__0\n", "node.toml:2: malformed value" },
    { "[pricing]\ngpu_hour_micros = yes\n", "node.toml:2: malformed value" },
    { "[pricing]\ngpu_hour_micros = 1 2\n", "node.toml:2: unexpected text after the value" },
    { "[pricing]\ngpu_hour_micros = 99999999999999999999\n", "node.toml:2: integer out of range" },
    { "[pricing]\ngpu_hour_micros = -1\n", "node.toml:2: gpu_hour_micros must be between 0 and" },
    { "[pricing]\ngpu_hour_micros = 1.5\n", "node.toml:2: gpu_hour_micros must be an integer" },
    { "[pricing]\ngpu_hour_micros = [1]\n", "node.toml:2: an array may hold only strings" },
    { "[pricing]\ncpu_hour_micros = 1\ncpu_hour_micros = 2\n", "node.toml:3: key 'cpu_hour_micros' appears twice in [pricing]" },
    { "[pricing]\ndisk_hour_micros = 1\n", "node.toml:2: unknown key 'disk_hour_micros' in [pricing]" },
    { "[limits]\nmax_concurrent_jobs = 0\n", "node.toml:2: max_concurrent_jobs must be between 1 and 1024" },
    { "[limits]\nmax_memory_mb = 5000000000\n", "node.toml:2: max_memory_mb must be between 0 and" },
    { "[node]\nsandbox = \"yes\"\n", "node.toml:2: sandbox must be true or false" },
    { "[node]\nsandbox = truely\n", "node.toml:2: malformed value" },
    { "[node]\nheartbeat_s = 0.01\n", "node.toml:2: heartbeat_s must be between 0.1 and 60" },
    { "[node]\nheartbeat_s = 1e999\n", "node.toml:2: number out of range" },
    { "[labels]\nregion = 5\n", "node.toml:2: label region must be a string" },
    { "[labels]\na = \"x\"\na = \"y\"\n", "node.toml:3: key 'a' appears twice in [labels]" },
    { "[labels]\na = \"x\x01\"\n", "node.toml:2: control character in a string" },
    { "[container]\nallow_images = [1]\n", "node.toml:2: an array may hold only strings" },
    { "[container]\nallow_images = [\"a\" \"b\"]\n", "node.toml:2: expected ',' or ']'" },
    { "[container]\nallow_images = [\"a\",\n", "node.toml:2: unterminated array" },
    { "[container]\nallow_images = \"a/*\"\n", "node.toml:2: allow_images must be an array of strings" },
    { "[container]\nallow_images = [\"\"]\n", "node.toml:2: allow_images: a pattern is 1 to 512" },
    { "[limits]\nmax_memory_mb = [\"1\"]\n", "node.toml:2: max_memory_mb must be an integer" },
    { "[limits]\nmax_scratch_mb = 0\n", "node.toml:2: max_scratch_mb must be between 1 and 1048576" },
    { "[limits]\nmax_scratch_mb = 1048577\n", "node.toml:2: max_scratch_mb must be between 1 and 1048576" },
    { "[limits]\nmax_scratch_mb = -5\n", "node.toml:2: max_scratch_mb must be between 1 and 1048576" },
    { "[limits]\nmax_scratch_mb = \"2G\"\n", "node.toml:2: max_scratch_mb must be an integer" },
    { "[limits]\nmax_file_mb = 0\n", "node.toml:2: max_file_mb must be between 1 and 1048576" },
    { "[limits]\nmax_job_files_mb = 1048577\n", "node.toml:2: max_job_files_mb must be between 1 and 1048576" },
    { "[limits]\nstep_uid_first = 65534\n", "node.toml:2: step_uid_first must be between 65536 and" },
    { "[limits]\nstep_uid_count = 257\n", "node.toml:2: step_uid_count must be between 1 and 256" },
    { "[orchestrator]\nkey = \"abc\"\n", "node.toml:2: key must be the orchestrator's X25519 public key" },
    { "[orchestrator]\nca_file = \"\"\n", "node.toml:2: ca_file must name a PEM file" },
    { "[orchestrator]\nkey = \"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\"\n", "node.toml:2: key must be the orchestrator's X25519 public key" },
    { "[container]\nallow_images = {}\n", "node.toml:2: inline tables are not supported" },
    /* [[llm]] model servers */
    { "[llm]\nkind = \"ollama\"\n", "node.toml:1: a model server is an array table: write [[llm]]" },
    { "[[models]]\n", "node.toml:1: unknown array of tables [[models]] (known: [[llm]])" },
    { "[[llm]\n", "node.toml:1: malformed array-of-tables header" },
    { "[[llm]] x\n", "node.toml:1: unexpected text after the section header" },
    { "[[llm]]\nkind = \"vllm\"\nurl = \"http://x\"\n", "node.toml:2: kind must be \"ollama\" or \"openai\"" },
    { "[[llm]]\nkind = 1\n", "node.toml:2: kind must be a string" },
    { "[[llm]]\nkind = \"ollama\"\nurl = \"ftp://x\"\n", "node.toml:3: url must start with http:// or https://" },
    { "[[llm]]\nurl = \"http://u:pw@x:1\"\n", "node.toml:2: url must not carry a user or password" },
    { "[[llm]]\nurl = \"http://x/?q=1\"\n", "node.toml:2: url must be a base URL" },
    { "[[llm]]\nurl = \"http://x y\"\n", "node.toml:2: url must be a base URL" },
    { "[[llm]]\nkind = \"ollama\"\nkind = \"openai\"\n", "node.toml:3: key 'kind' appears twice in this [[llm]]" },
    { "[[llm]]\nmodel = \"x\"\n", "node.toml:2: unknown key 'model' in [[llm]] (known: kind, url, timeout_s)" },
    { "[[llm]]\ntimeout_s = 0\n", "node.toml:2: timeout_s must be a number between 1 and 86400" },
    { "[[llm]]\ntimeout_s = \"5\"\n", "node.toml:2: timeout_s must be a number between 1 and 86400" },
    { "[[llm]]\nkind = \"ollama\"\n", "node.toml:1: this [[llm]] needs url = " },
    { "[node]\n[[llm]]\nurl = \"http://x\"\n", "node.toml:2: this [[llm]] needs kind = " },
    { "[[llm]]\nkind = \"ollama\"\nurl = \"http://x\"\n[[llm]]\nkind = \"openai\"\nurl = \"http://x/\"\n",
      "node.toml:6: url \"http://x\" is already another [[llm]]'s" },
    { "[[llm]]\n[[llm]]\n[[llm]]\n[[llm]]\n[[llm]]\n[[llm]]\n[[llm]]\n[[llm]]\n[[llm]]\n", "node.toml:9: more than 8 [[llm]] servers" },
    { "[pricing]\nllm_1k_tokens_micros = -1\n", "node.toml:2: llm_1k_tokens_micros must be between 0 and" },
    { "[node]\nllm_refresh_s = 0.5\n", "node.toml:2: llm_refresh_s must be between 1 and 86400" },
    { "[pricing]\nllm_model_prices = [\"tiny:1b\"]\n", "node.toml:2: llm_model_prices: \"tiny:1b\" is not \"MODEL=MICROS\"" },
    { "[pricing]\nllm_model_prices = [\"=5\"]\n", "node.toml:2: llm_model_prices: \"=5\" is not" },
    { "[pricing]\nllm_model_prices = [\"a=-5\"]\n", "node.toml:2: llm_model_prices: \"a=-5\" is not" },
    { "[pricing]\nllm_model_prices = [\"a=1\", \"a=2\"]\n", "node.toml:2: llm_model_prices: model \"a\" priced twice" },
    /* an llm price is per token or per second, never both at one level */
    { "[pricing]\nllm_1k_tokens_micros = 5\nllm_second_micros = 9\n", "node.toml:3: 'llm_second_micros' and 'llm_1k_tokens_micros' set the same price (an llm price is per token or per second): keep one" },
    { "[pricing]\nllm_second_micros = 9\nllm_1k_tokens_micros = 5\n", "node.toml:3: 'llm_1k_tokens_micros' and 'llm_second_micros' set the same price" },
    { "[pricing]\nllm_second_micros = -1\n", "node.toml:2: llm_second_micros" },
    { "[pricing]\nllm_second_micros = 1000000000001\n", "node.toml:2: llm_second_micros" },
    { "[pricing]\nllm_model_second_prices = [\"a=x\"]\n", "node.toml:2: llm_model_second_prices: \"a=x\" is not" },
    { "[pricing]\nllm_model_second_prices = [\"a=1\", \"a=2\"]\n", "node.toml:2: llm_model_second_prices: model \"a\" priced twice" },
    { "[pricing]\nllm_model_prices = [\"a=1\"]\nllm_model_second_prices = [\"b=1\", \"a=2\"]\n", "node.toml:3: llm_model_second_prices: model \"a\" is priced per token already" },
    { "[pricing]\nllm_model_second_prices = [\"a=2\"]\nllm_model_prices = [\"a=1\"]\n", "node.toml:3: llm_model_prices: model \"a\" is priced per second already" },
    /* [api] listen: an IP literal and a port, or "off" */
    { "[api]\nlisten = \"localhost:7180\"\n", "node.toml:2: listen must be \"off\" or ADDRESS:PORT" },
    { "[api]\nlisten = \"127.0.0.1\"\n", "node.toml:2: listen must be \"off\" or ADDRESS:PORT" },
    { "[api]\nlisten = \"127.0.0.1:65536\"\n", "node.toml:2: listen must be \"off\" or ADDRESS:PORT" },
    { "[api]\nlisten = \"127.0.0.1:-1\"\n", "node.toml:2: listen must be \"off\" or ADDRESS:PORT" },
    { "[api]\nlisten = \"127.0.0.1:\"\n", "node.toml:2: listen must be \"off\" or ADDRESS:PORT" },
    { "[api]\nlisten = \"::1:80\"\n", "node.toml:2: listen must be \"off\" or ADDRESS:PORT" },
    { "[api]\nlisten = \"[::1:80\"\n", "node.toml:2: listen must be \"off\" or ADDRESS:PORT" },
    { "[api]\nlisten = \"1.2.3.4.5:80\"\n", "node.toml:2: listen must be \"off\" or ADDRESS:PORT" },
    { "[api]\nlisten = 7180\n", "node.toml:2: listen must be a string" },
    { "[api]\nport = 1\n", "node.toml:2: unknown key 'port' in [api]" },
};

/* [api] listen: what parses, and that `init`'s file keeps it unset. */
static void api_listen(void **state)
{
    (void)state;
    static const char *const good[] = { "off", "127.0.0.1:0", "0.0.0.0:7180",
                                        "[::1]:7180", "[::]:1" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        node_config c;
        char err[512] = "", text[96];
        int n = snprintf(text, sizeof text, "[api]\nlisten = \"%s\"\n", good[i]);
        node_config_defaults(&c);
        assert_int_equal(node_config_parse(&c, text, (size_t)n, "node.toml", err,
                                           sizeof err), 0);
        assert_string_equal(c.api_listen, good[i]);
        node_config_free(&c);
    }
    char host[64];
    unsigned port = 0;
    assert_int_equal(node_api_split("[::1]:7180", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7180);
    assert_int_equal(node_api_split("10.0.0.1:1", host, 4, &port), -1);
    node_config c;
    node_config_defaults(&c);
    char *text = node_config_format(&c);
    assert_non_null(strstr(text, "[api]\n# listen = \"127.0.0.1:7180\""));
    char err[512] = "";
    assert_int_equal(node_config_parse(&c, text, strlen(text), "x", err, sizeof err), 0);
    assert_null(c.api_listen);
    free(text);
    node_config_free(&c);
}

/* Model servers: several, in order, back from what `init` writes. */
static void llm_servers(void **state)
{
    (void)state;
    node_config c;
    char err[512] = "";
    const char *text =
        "[pricing]\nllm_1k_tokens_micros = 2500\n"
        "llm_model_prices = [\"llama3:8b=2000\", \"a=b=7\"]\n"
        "[node]\nllm_refresh_s = 5\n"
        "[[llm]]\nkind = \"ollama\"\nurl = \"http://127.0.0.1:11434//\"\n"
        "\n[[llm]] # the second\nkind = 'openai'\nurl = \"https://h:8000/v1x\"\n"
        "timeout_s = 12.5\n"
        "[labels]\nregion = \"eu\"\n";
    assert_int_equal(parse(&c, text, err, sizeof err), 0);
    assert_int_equal(c.n_llm, 2);
    assert_int_equal(c.llm[0].kind, NODE_LLM_OLLAMA);
    assert_string_equal(c.llm[0].url, "http://127.0.0.1:11434");
    assert_true(c.llm[0].timeout_s == NODE_LLM_TIMEOUT_S);
    assert_int_equal(c.llm[1].kind, NODE_LLM_OPENAI);
    assert_string_equal(c.llm[1].url, "https://h:8000/v1x");
    assert_true(c.llm[1].timeout_s == 12.5);
    assert_int_equal(c.llm_1k_tokens_micros, 2500);
    int own = -1, per_s = -1;
    assert_int_equal(node_llm_price(&c, "llama3:8b", &own, &per_s), 2000);
    assert_int_equal(own, 1);
    assert_int_equal(per_s, 0);
    assert_int_equal(node_llm_price(&c, "a=b", &own, &per_s), 7);   /* the last '=' */
    assert_int_equal(node_llm_price(&c, "llama3", &own, &per_s), 2500);
    assert_int_equal(own, 0);
    assert_true(c.llm_refresh_s == 5);
    assert_int_equal(c.n_labels, 1);   /* [labels] after [[llm]] is its own */
    char *out = node_config_format(&c);
    node_config d;
    assert_int_equal(parse(&d, out, err, sizeof err), 0);
    assert_int_equal(d.n_llm, 2);
    assert_string_equal(d.llm[1].url, c.llm[1].url);
    assert_true(d.llm[1].timeout_s == 12.5);
    assert_int_equal(d.llm_1k_tokens_micros, 2500);
    assert_int_equal(node_llm_price(&d, "llama3:8b", NULL, &per_s), 2000);
    char *again = node_config_format(&d);
    assert_string_equal(out, again);
    free(out);
    free(again);
    node_config_free(&c);
    node_config_free(&d);
}

/* A node priced per second: the node's price and a model's own in either
 * unit, each the one it was given, back from what `init` writes. */
static void llm_per_second(void **state)
{
    (void)state;
    node_config c, d;
    char err[512] = "";
    const char *text =
        "[pricing]\nllm_second_micros = 40\n"
        "llm_model_prices = [\"tok:1b=500\"]\n"
        "llm_model_second_prices = [\"big:70b=300\"]\n"
        "[[llm]]\nkind = \"ollama\"\nurl = \"http://127.0.0.1:11434\"\n";
    assert_int_equal(parse(&c, text, err, sizeof err), 0);
    char *out = node_config_format(&c);
    assert_non_null(out);
    assert_int_equal(parse(&d, out, err, sizeof err), 0);
    assert_null(strstr(out, "\nllm_1k_tokens_micros"));   /* both would be refused */
    const node_config *cs[] = { &c, &d };
    for (size_t i = 0; i < 2; i++) {
        int own = -1, per_s = -1;
        assert_int_equal(node_llm_price(cs[i], "llama3", &own, &per_s), 40);
        assert_int_equal(own, 0);
        assert_int_equal(per_s, 1);
        assert_int_equal(node_llm_price(cs[i], "tok:1b", &own, &per_s), 500);
        assert_int_equal(own, 1);
        assert_int_equal(per_s, 0);
        assert_int_equal(node_llm_price(cs[i], "big:70b", &own, &per_s), 300);
        assert_int_equal(own, 1);
        assert_int_equal(per_s, 1);
    }
    free(out);
    node_config_free(&c);
    node_config_free(&d);
}

static void malformed_lines(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        node_config c;
        char err[512] = "";
        int rc = parse(&c, bad[i].text, err, sizeof err);
        if (rc != -1 || strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
            fail_msg("case %zu: %s\n got rc %d, \"%s\"\n want \"%s...\"", i,
                     bad[i].text, rc, err, bad[i].want);
        node_config_free(&c);
    }
}

/* [container] allow_images: none by default, globs as fnmatch reads them. */
static void allow_images(void **state)
{
    (void)state;
    node_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, "", err, sizeof err), 0);
    assert_int_equal(c.n_allow_images, 0);
    assert_int_equal(node_config_image_allowed(&c, "busybox:1.36"), 0);
    node_config_free(&c);
    assert_int_equal(parse(&c, "[container]\nallow_images = [\"localhost/*\", "
                               "'busybox:1.36' , ]  # two\n", err, sizeof err), 0);
    assert_int_equal(c.n_allow_images, 2);
    assert_string_equal(c.allow_images[1], "busybox:1.36");
    assert_int_equal(node_config_image_allowed(&c, "localhost/wc:latest"), 1);
    assert_int_equal(node_config_image_allowed(&c, "busybox:1.36"), 1);
    assert_int_equal(node_config_image_allowed(&c, "busybox:latest"), 0);
    assert_int_equal(node_config_image_allowed(&c, "evil/localhost/x"), 0);
    node_config_free(&c);
    assert_int_equal(parse(&c, "[container]\nallow_images = []\n", err, sizeof err), 0);
    assert_int_equal(c.n_allow_images, 0);
    node_config_free(&c);
}

/* A job's GPUs: the lowest free indexes, exactly its count, or none. */
static void gpu_ids(void **state)
{
    (void)state;
    agent a;
    memset(&a, 0, sizeof a);
    assert_int_equal(pthread_mutex_init(&a.mu, NULL), 0);
    a.st.n_gpus = 4;
    char names[64][4], why[160];
    const char *ids[65];
    uint64_t first, second, third;
    assert_null(agent_take_gpus(&a, 0, &first, names, ids, why, sizeof why));
    assert_null(ids[0]);
    assert_int_equal(first, 0);
    assert_null(agent_take_gpus(&a, 2, &first, names, ids, why, sizeof why));
    assert_string_equal(ids[0], "0");
    assert_string_equal(ids[1], "1");
    assert_null(ids[2]);
    char names2[64][4];
    assert_null(agent_take_gpus(&a, 1, &second, names2, ids, why, sizeof why));
    assert_string_equal(ids[0], "2");
    assert_null(ids[1]);
    /* Two more than are free: refused, nothing taken. */
    const char *no = agent_take_gpus(&a, 2, &third, names2, ids, why, sizeof why);
    assert_non_null(no);
    assert_string_equal(no, "needs 2 GPUs; 1 of this node's 4 are free");
    assert_int_equal(third, 0);
    assert_null(ids[0]);
    assert_int_equal(a.gpus_busy, 0x7);
    agent_give_back_gpus(&a, first);
    assert_null(agent_take_gpus(&a, 2, &third, names2, ids, why, sizeof why));
    assert_string_equal(ids[0], "0");
    assert_string_equal(ids[1], "1");
    agent_give_back_gpus(&a, second);
    agent_give_back_gpus(&a, third);
    assert_int_equal(a.gpus_busy, 0);
    /* A node without GPUs. */
    a.st.n_gpus = 0;
    assert_non_null(agent_take_gpus(&a, 1, &first, names, ids, why, sizeof why));
    pthread_mutex_destroy(&a.mu);
}

static void nul_byte(void **state)
{
    (void)state;
    static const char text[] = "[node]\nsandbox = true\0\n";
    node_config c;
    node_config_defaults(&c);
    char err[512] = "";
    assert_int_equal(node_config_parse(&c, text, sizeof text - 1, "n.toml",
                                       err, sizeof err), -1);
    assert_string_equal(err, "n.toml:2: NUL byte");
    node_config_free(&c);
}

static void too_many_labels(void **state)
{
    (void)state;
    char *text = malloc(8192), *p = text;
    p += sprintf(p, "[labels]\n");
    for (unsigned i = 0; i <= NODE_CONFIG_MAX_LABELS; i++)
        p += sprintf(p, "k%u = \"v\"\n", i);
    node_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, text, err, sizeof err), -1);
    assert_string_equal(err, "node.toml:66: more than 64 labels");
    node_config_free(&c);
    free(text);
}

static char *temp_file(const char *text, size_t len)
{
    char *path = strdup("/tmp/test_node_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void oversized_file(void **state)
{
    (void)state;
    size_t len = NODE_CONFIG_MAX_BYTES + 1;
    char *text = malloc(len);
    memset(text, '#', len);
    text[len - 1] = '\n';
    char *path = temp_file(text, len);
    node_config c;
    char err[512] = "", want[600];
    assert_int_equal(node_config_load(&c, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: larger than 65536 bytes", path);
    assert_string_equal(err, want);
    node_config_free(&c);
    /* The same bytes in memory. */
    node_config_defaults(&c);
    assert_int_equal(node_config_parse(&c, text, len, "m", err, sizeof err), -1);
    assert_string_equal(err, "m: larger than 65536 bytes");
    unlink(path);
    free(path);
    free(text);
}

static void missing_file(void **state)
{
    (void)state;
    node_config c;
    char err[512] = "";
    assert_int_equal(node_config_load(&c, "/nonexistent/x.toml", err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/x.toml: No such file or directory");
    node_config_free(&c);
}

/* What `init` writes is read back to the same values. */
static void format_round_trip(void **state)
{
    (void)state;
    node_config c;
    node_config_defaults(&c);
    c.orchestrator_url = strdup("https://orch.example:9443/");
    c.modules = strdup("/a:/b");
    c.sandbox = 0;
    c.max_concurrent_jobs = 2;
    c.max_memory_mb = 1024;
    c.max_scratch_mb = 300;
    c.max_file_mb = 7;
    c.max_job_files_mb = 9;
    c.orchestrator_key = strdup("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100");
    c.orchestrator_ca_file = strdup("/srv/ca \"x\".pem");
    c.cpu_hour_micros = 7;
    c.label_keys[0] = strdup("region");
    c.label_values[0] = strdup("us \"east\"");
    c.n_labels = 1;
    char *globs[] = {strdup("localhost/*"), strdup("a\"b")};
    c.allow_images = malloc(sizeof globs);
    memcpy(c.allow_images, globs, sizeof globs);
    c.n_allow_images = 2;
    char *text = node_config_format(&c);
    assert_non_null(text);
    char *path = temp_file(text, strlen(text));
    node_config d;
    char err[512] = "";
    if (node_config_load(&d, path, err, sizeof err) != 0)
        fail_msg("%s\n%s", err, text);
    assert_string_equal(d.orchestrator_url, c.orchestrator_url);
    assert_string_equal(d.modules, "/a:/b");
    assert_int_equal(d.sandbox, 0);
    assert_int_equal(d.max_concurrent_jobs, 2);
    assert_int_equal(d.max_memory_mb, 1024);
    assert_int_equal(d.max_scratch_mb, 300);
    assert_int_equal(d.max_file_mb, 7);
    assert_int_equal(d.max_job_files_mb, 9);
    assert_string_equal(d.orchestrator_key, c.orchestrator_key);
    assert_string_equal(d.orchestrator_ca_file, c.orchestrator_ca_file);
    assert_int_equal(d.cpu_hour_micros, 7);
    assert_int_equal(d.gpu_hour_micros, 500000);
    assert_int_equal(d.n_labels, 1);
    assert_string_equal(d.label_values[0], "us \"east\"");
    assert_int_equal(d.n_allow_images, 2);
    assert_string_equal(d.allow_images[1], "a\"b");
    unlink(path);
    free(path);
    free(text);
    node_config_free(&c);
    node_config_free(&d);
}

/* A file written before micro-dollars: its cents are converted exactly. */
static void cents_prices(void **state)
{
    (void)state;
    node_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, "[pricing]\ngpu_hour_cents = 30\ncpu_hour_cents = 2\n"
                               "memory_gb_hour_cents = 1\n", err, sizeof err), 0);
    assert_int_equal(c.gpu_hour_micros, 300000);
    assert_int_equal(c.cpu_hour_micros, 20000);
    assert_int_equal(c.memory_gb_hour_micros, 10000);
    node_config_free(&c);
    assert_int_not_equal(parse(&c, "[pricing]\ngpu_hour_cents = 100000001\n", err,
                               sizeof err), 0);
    assert_non_null(strstr(err, "gpu_hour_cents must be between 0 and"));
    node_config_free(&c);
    assert_int_not_equal(parse(&c, "[pricing]\ncpu_hour_micros = 5\ncpu_hour_cents = 1\n",
                               err, sizeof err), 0);
    assert_non_null(strstr(err, "set the same price: keep one"));
    node_config_free(&c);
}

/* [backend] kind = "slurm": what a gateway needs, names sbatch takes as
 * one word, absolute paths; a plain node's file has no [backend]. */
static void slurm_backend(void **state)
{
    (void)state;
    node_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, "", err, sizeof err), 0);
    assert_int_equal(c.backend, NODE_BACKEND_LOCAL);
    assert_int_equal(c.slurm_default_memory_mb, 512);
    char *text = node_config_format(&c);
    assert_null(strstr(text, "[backend]"));
    free(text);
    node_config_free(&c);
    assert_int_equal(parse(&c, "[backend]\nkind = \"slurm\"\npartition = \"gpu-a100\"\n"
                              "account = \"lab_1\"\nqos = \"high\"\nspool = \"/shared/rz\"\n"
                              "command = \"/opt/rz/bin/rhizos-node\"\n"
                              "default_memory_mb = 2048\npoll_s = 0.5\n", err, sizeof err), 0);
    assert_int_equal(c.backend, NODE_BACKEND_SLURM);
    assert_string_equal(c.slurm_partition, "gpu-a100");
    assert_string_equal(c.slurm_account, "lab_1");
    assert_string_equal(c.slurm_qos, "high");
    assert_string_equal(c.slurm_spool, "/shared/rz");
    assert_string_equal(c.slurm_command, "/opt/rz/bin/rhizos-node");
    assert_int_equal(c.slurm_default_memory_mb, 2048);
    assert_true(c.slurm_poll_s == 0.5);
    text = node_config_format(&c);   /* read back the same */
    node_config back;
    assert_int_equal(parse(&back, text, err, sizeof err), 0);
    assert_int_equal(back.backend, NODE_BACKEND_SLURM);
    assert_string_equal(back.slurm_qos, "high");
    assert_string_equal(back.slurm_command, "/opt/rz/bin/rhizos-node");
    assert_true(back.slurm_poll_s == 0.5);
    node_config_free(&back);
    free(text);
    node_config_free(&c);
    static const struct { const char *text, *want; } wrong[] = {
        { "[backend]\nkind = \"kubernetes\"\n", "kind must be" },
        { "[backend]\nkind = \"slurm\"\n", "needs partition" },
        { "[backend]\nkind = \"slurm\"\npartition = \"p\"\n", "needs partition" },
        { "[backend]\npartition = \"a b\"\n", "partition must be" },
        { "[backend]\naccount = \"--wrap=x;y\"\n", "account must be" },
        { "[backend]\nqos = \"\"\n", "qos must be" },
        { "[backend]\nspool = \"relative/dir\"\n", "absolute path" },
        { "[backend]\ncommand = \"rhizos-node\"\n", "absolute path" },
        { "[backend]\npoll_s = 0\n", "poll_s must be" },
        { "[backend]\ndefault_memory_mb = 0\n", "default_memory_mb" },
        { "[backend]\nnodes = 3\n", "unknown key" },
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        err[0] = '\0';
        assert_int_equal(parse(&c, wrong[i].text, err, sizeof err), -1);
        if (!strstr(err, wrong[i].want))
            fail_msg("%s: %s", wrong[i].text, err);
        node_config_free(&c);
    }
}

/* [backend] slurmrestd: an address of two forms only, JWT's user and
 * token file together, read back the same. */
static void slurmrestd_keys(void **state)
{
    (void)state;
    node_config c;
    char err[512] = "";
    static const char *const good[] = { "unix:/run/slurmrestd.sock",
                                        "http://127.0.0.1:6820",
                                        "http://login1:6820" };
    for (size_t i = 0; i < 3; i++) {
        char text[300];
        snprintf(text, sizeof text, "[backend]\nkind = \"slurm\"\npartition = "
                 "\"p\"\nspool = \"/s\"\nslurmrestd = \"%s\"\n"
                 "slurmrestd_user = \"svc\"\nslurmrestd_token_file = "
                 "\"/etc/rz/jwt\"\n", good[i]);
        assert_int_equal(parse(&c, text, err, sizeof err), 0);
        assert_string_equal(c.slurm_rest, good[i]);
        char *out = node_config_format(&c);
        node_config back;
        assert_int_equal(parse(&back, out, err, sizeof err), 0);
        assert_string_equal(back.slurm_rest, good[i]);
        assert_string_equal(back.slurm_rest_user, "svc");
        assert_string_equal(back.slurm_rest_token, "/etc/rz/jwt");
        node_config_free(&back);
        free(out);
        node_config_free(&c);
    }
    static const struct { const char *text, *want; } wrong[] = {
        { "[backend]\nslurmrestd = \"127.0.0.1:6820\"\n", "slurmrestd must be" },
        { "[backend]\nslurmrestd = \"https://h:1\"\n", "slurmrestd must be" },
        { "[backend]\nslurmrestd = \"http://u:p@h:1\"\n", "slurmrestd must be" },
        { "[backend]\nslurmrestd = \"http://h:1/slurm\"\n", "slurmrestd must be" },
        { "[backend]\nslurmrestd = \"http://\"\n", "slurmrestd must be" },
        { "[backend]\nslurmrestd = \"unix:relative\"\n", "slurmrestd must be" },
        { "[backend]\nslurmrestd_user = \"a b\"\n", "slurmrestd_user must be" },
        { "[backend]\nslurmrestd_token_file = \"jwt\"\n", "absolute path" },
        { "[backend]\nkind = \"slurm\"\npartition = \"p\"\nspool = \"/s\"\n"
          "slurmrestd_user = \"svc\"\n", "go together" },
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        err[0] = '\0';
        assert_int_equal(parse(&c, wrong[i].text, err, sizeof err), -1);
        if (!strstr(err, wrong[i].want))
            fail_msg("%s: %s", wrong[i].text, err);
        node_config_free(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(cents_prices),
        cmocka_unit_test(good_file),
        cmocka_unit_test(number_kinds),
        cmocka_unit_test(malformed_lines),
        cmocka_unit_test(allow_images),
        cmocka_unit_test(gpu_ids),
        cmocka_unit_test(nul_byte),
        cmocka_unit_test(too_many_labels),
        cmocka_unit_test(oversized_file),
        cmocka_unit_test(missing_file),
        cmocka_unit_test(format_round_trip),
        cmocka_unit_test(llm_servers),
        cmocka_unit_test(llm_per_second),
        cmocka_unit_test(api_listen),
        cmocka_unit_test(slurm_backend),
        cmocka_unit_test(slurmrestd_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
