/*
 * Tests for config.c: every value class, the diagnostics' exact location
 * ("config.yaml:LINE: KEY:"), environment overrides and derived defaults.
 * Each test writes its YAML to config.yaml in a private temporary
 * directory; line numbers in the comments beside the YAML are the ones the
 * assertions expect.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "log.h"

static char tmpdir[512];
static char cfg_path[600];

static int group_setup(void **state)
{
	const char *base = getenv("TMPDIR");

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_config.XXXXXX",
		 base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(cfg_path, sizeof(cfg_path), "%s/config.yaml", tmpdir);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(cfg_path);
	return rmdir(tmpdir);
}

static void write_file(const char *text, size_t len)
{
	FILE *f = fopen(cfg_path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Loads TEXT as the config file; the caller frees *cfg and *diag. */
static int load(const char *text, const char *env_node,
		const char *env_cluster, struct config **cfg,
		struct config_diag *diag)
{
	write_file(text, strlen(text));
	memset(diag, 0, sizeof(*diag));
	return config_load(cfg_path, env_node, env_cluster, cfg, diag);
}

/* Shows the whole diagnostic text when an expected line is missing. */
#define assert_diag(diag, needle)                                           \
	do {                                                                \
		const char *t_ = (diag)->text ? (diag)->text : "";          \
		if (!strstr(t_, (needle)))                                  \
			fail_msg("missing \"%s\" in diag:\n%s", (needle), t_); \
	} while (0)

#define assert_no_diag(diag, needle)                                        \
	do {                                                                \
		const char *t_ = (diag)->text ? (diag)->text : "";          \
		if (strstr(t_, (needle)))                                   \
			fail_msg("unexpected \"%s\" in diag:\n%s", (needle), t_); \
	} while (0)

/* Expects the file to fail with exactly COUNT problems. */
static void expect_errors(const char *text, unsigned count,
			  struct config_diag *diag)
{
	struct config *cfg = (struct config *)1;
	int rc = load(text, NULL, NULL, &cfg, diag);

	if (rc != KR_ECONFIG || diag->count != count)
		fail_msg("rc %d count %u, want %d and %u; diag:\n%s", rc,
			 diag->count, KR_ECONFIG, count,
			 diag->text ? diag->text : "");
	assert_null(cfg);
}

/* Expects the file to load cleanly; the caller frees the config. */
static struct config *expect_ok(const char *text, const char *env_node,
				const char *env_cluster)
{
	struct config *cfg = NULL;
	struct config_diag diag;
	int rc = load(text, env_node, env_cluster, &cfg, &diag);

	if (rc != 0)
		fail_msg("rc %d; diag:\n%s", rc, diag.text ? diag.text : "");
	assert_int_equal(diag.count, 0);
	assert_null(diag.text);
	assert_non_null(cfg);
	return cfg;
}

static void short_hostname(char *out, size_t size)
{
	char host[256] = "";

	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	host[strcspn(host, ".")] = '\0';
	snprintf(out, size, "%s", host);
}

static const char seed_yaml[] =
	"log:\n"
	"  level: \"info\"\n"
	"\n"
	"filesystem:\n"
	"  watch_paths:\n"
	"    - \"/var/lib/krakenfs/volumes\"\n"
	"  exclude_patterns:\n"
	"    - \"*.tmp\"\n"
	"    - \"*.log\"\n"
	"  recursive: true\n"
	"\n"
	"sync:\n"
	"  node_id: \"vm1\"\n"
	"  cluster_nodes:\n"
	"    - \"vm1:192.168.1.10\"\n"
	"    - \"vm2:192.168.1.11\"\n"
	"  p2p_port: 6881\n"
	"  bandwidth:\n"
	"    enable: true\n"
	"    egress_bits_per_sec: 1677721600\n"
	"    ingress_bits_per_sec: 2516582400\n"
	"  conflict_resolution:\n"
	"    strategy: \"timestamp\"\n"
	"    timeout: \"30s\"\n"
	"\n"
	"volume:\n"
	"  root_path: \"/var/lib/krakenfs/volumes\"\n"
	"  driver_name: \"krakenfs\"\n";

static void test_seed_file_loads(void **state)
{
	struct config *cfg = expect_ok(seed_yaml, NULL, NULL);

	(void)state;
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_int_equal(cfg->n_watch_paths, 1);
	assert_string_equal(cfg->watch_paths[0], "/var/lib/krakenfs/volumes");
	assert_int_equal(cfg->n_exclude_patterns, 2);
	assert_string_equal(cfg->exclude_patterns[0], "*.tmp");
	assert_string_equal(cfg->exclude_patterns[1], "*.log");
	assert_true(cfg->recursive);
	assert_string_equal(cfg->node_id, "vm1");
	assert_int_equal(cfg->n_peers, 2);
	assert_string_equal(cfg->peers[0].id, "vm1");
	assert_string_equal(cfg->peers[0].host, "192.168.1.10");
	assert_int_equal(cfg->peers[0].port, 6881);
	assert_string_equal(cfg->peers[1].id, "vm2");
	assert_string_equal(cfg->peers[1].host, "192.168.1.11");
	assert_int_equal(cfg->peers[1].port, 6881);
	assert_ptr_equal(config_self(cfg), &cfg->peers[0]);
	assert_int_equal(cfg->p2p_port, 6881);
	assert_true(cfg->bandwidth_enable);
	assert_true(cfg->egress_bits_per_sec == 1677721600ULL);
	assert_true(cfg->ingress_bits_per_sec == 2516582400ULL);
	assert_int_equal(cfg->strategy, CONFIG_STRATEGY_TIMESTAMP);
	assert_true(cfg->conflict_timeout_ms == 30000);
	assert_string_equal(cfg->root_path, "/var/lib/krakenfs/volumes");
	assert_string_equal(cfg->driver_name, "krakenfs");
	config_free(cfg);
}

static void assert_default_values(const struct config *cfg)
{
	char host[256];

	short_hostname(host, sizeof(host));
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_int_equal(cfg->n_watch_paths, 1);
	assert_string_equal(cfg->watch_paths[0], "/var/lib/krakenfs/volumes");
	assert_int_equal(cfg->n_exclude_patterns, 0);
	assert_true(cfg->recursive);
	assert_string_equal(cfg->node_id, host);
	assert_string_equal(cfg->cluster_id, "krakenfs");
	assert_int_equal(cfg->n_peers, 1);
	assert_string_equal(cfg->peers[0].id, host);
	assert_string_equal(cfg->peers[0].host, "127.0.0.1");
	assert_int_equal(cfg->peers[0].port, 6881);
	assert_int_equal(cfg->p2p_port, 6881);
	assert_string_equal(cfg->listen_address, "0.0.0.0");
	assert_false(cfg->bandwidth_enable);
	assert_true(cfg->egress_bits_per_sec == 0);
	assert_true(cfg->ingress_bits_per_sec == 0);
	assert_int_equal(cfg->strategy, CONFIG_STRATEGY_TIMESTAMP);
	assert_true(cfg->conflict_timeout_ms == 30000);
	assert_true(cfg->max_lamport_jump == 1000000000);
	assert_true(cfg->mount_wait_ms == 10000);
	assert_false(cfg->tls_enable);
	assert_string_equal(cfg->tls_cert_file, "/etc/krakenfs/tls/node.pem");
	assert_string_equal(cfg->tls_key_file, "/etc/krakenfs/tls/node-key.pem");
	assert_string_equal(cfg->tls_ca_file, "/etc/krakenfs/tls/ca.pem");
	assert_string_equal(cfg->root_path, "/var/lib/krakenfs/volumes");
	assert_string_equal(cfg->driver_name, "krakenfs");
	assert_string_equal(cfg->journal_path, "/var/lib/krakenfs/journal.db");
	assert_true(cfg->journal_retention_ms == 30ULL * 86400000ULL);
	assert_true(cfg->journal_retention_pin_max_ms == 90ULL * 86400000ULL);
	assert_true(cfg->journal_rejoin_wait_ms == 10ULL * 60000ULL);
	assert_true(cfg->scrub_period_ms == 7ULL * 86400000ULL);
	assert_string_equal(cfg->api_host, "127.0.0.1");
	assert_int_equal(cfg->api_port, 6882);
	assert_string_equal(cfg->api_token_file, "/etc/krakenfs/api-token");
	assert_null(cfg->api_read_token_file);
	assert_int_equal(cfg->n_api_allowed_hosts, 0);
	assert_string_equal(cfg->plugin_socket,
			    "/run/docker/plugins/krakenfs.sock");
	assert_ptr_equal(config_self(cfg), &cfg->peers[0]);
}

/* The example config lists every default, so it must load as the defaults.
 * KRAKEN_SOURCE_DIR comes from the build, so the test finds the file from
 * any working directory and fails loudly if it is gone. */
static void test_example_is_defaults(void **state)
{
	const char *path = KRAKEN_SOURCE_DIR "/examples/config.yaml";
	struct config_diag diag = { 0 };
	struct config *cfg = NULL;

	(void)state;
	if (access(path, R_OK) != 0)
		fail_msg("cannot read %s", path);
	if (config_load(path, NULL, NULL, &cfg, &diag) != 0)
		fail_msg("%s", diag.text ? diag.text : "");
	assert_default_values(cfg);
	config_free(cfg);
}

static void test_defaults_without_file(void **state)
{
	struct config *cfg = NULL;
	struct config_diag diag = { 0 };

	(void)state;
	assert_int_equal(config_load(NULL, NULL, NULL, &cfg, &diag), 0);
	assert_int_equal(diag.count, 0);
	assert_default_values(cfg);
	config_free(cfg);

	assert_int_equal(config_defaults(&cfg), 0);
	assert_default_values(cfg);
	config_free(cfg);
}

static void test_empty_and_comment_only_files(void **state)
{
	static const char *const texts[] = {
		"", "\n\n", "# nothing here\n# at all\n", "---\n", "~\n",
		"sync:\nlog:\n  level:\n",
	};
	struct config *cfg;

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		cfg = expect_ok(texts[i], NULL, NULL);
		assert_default_values(cfg);
		config_free(cfg);
	}
}

static void test_missing_file(void **state)
{
	struct config *cfg = (struct config *)1;
	struct config_diag diag = { 0 };
	char path[700], want[800];

	(void)state;
	snprintf(path, sizeof(path), "%s/nope.yaml", tmpdir);
	snprintf(want, sizeof(want),
		 "%s: cannot read: No such file or directory\n", path);
	assert_int_equal(config_load(path, NULL, NULL, &cfg, &diag), -ENOENT);
	assert_null(cfg);
	assert_int_equal(diag.count, 1);
	assert_string_equal(diag.text, want);
	config_diag_release(&diag);
	assert_null(diag.text);
}

static void test_unknown_keys(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("sync:\n"                      /* 1 */
		      "  p2pport: 6881\n"            /* 2 */
		      "  level: info\n"              /* 3 */
		      "colour: blue\n"               /* 4 */
		      "volume:\n"                    /* 5 */
		      "  Root_Path: /srv\n"          /* 6 */
		      "sync.node_id: vm1\n"          /* 7 */
		      "api:\n"                       /* 8 */
		      "  zzzzzzzzzzzz: 1\n",         /* 9 */
		      6, &diag);
	assert_diag(&diag, "config.yaml:2: sync.p2pport: unknown key, "
			   "did you mean sync.p2p_port?\n");
	assert_diag(&diag, "config.yaml:3: sync.level: unknown key, "
			   "did you mean log.level?\n");
	assert_diag(&diag, "config.yaml:4: colour: unknown key\n");
	assert_diag(&diag, "config.yaml:6: volume.Root_Path: unknown key, "
			   "did you mean volume.root_path?\n");
	assert_diag(&diag, "config.yaml:7: sync.node_id: unknown key "
			   "(a dotted name must be written as nested mappings)");
	assert_diag(&diag, "config.yaml:9: api.zzzzzzzzzzzz: unknown key\n");
	config_diag_release(&diag);
}

static void test_wrong_types(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("log:\n"                                /* 1 */
		      "  level:\n"                            /* 2 */
		      "    name: info\n"                      /* 3 */
		      "filesystem:\n"                         /* 4 */
		      "  watch_paths: /var/lib/krakenfs/volumes\n" /* 5 */
		      "  exclude_patterns:\n"                 /* 6 */
		      "    - [a, b]\n"                        /* 7 */
		      "sync: [1, 2]\n"                        /* 8 */
		      "volume:\n"                             /* 9 */
		      "  root_path: [/a]\n"                   /* 10 */
		      "api:\n"                                /* 11 */
		      "  [a]: 1\n",                           /* 12 */
		      6, &diag);
	assert_diag(&diag, "config.yaml:3: log.level: expected one of error, "
			   "warn, info, debug, got a mapping\n");
	assert_diag(&diag, "config.yaml:5: filesystem.watch_paths: expected a "
			   "list of absolute paths, got "
			   "\"/var/lib/krakenfs/volumes\"\n");
	assert_diag(&diag, "config.yaml:7: filesystem.exclude_patterns: "
			   "expected a non-empty pattern, got a list\n");
	assert_diag(&diag, "config.yaml:8: sync: expected a mapping, "
			   "got a list\n");
	assert_diag(&diag, "config.yaml:10: volume.root_path: expected an "
			   "absolute path, got a list\n");
	assert_diag(&diag, "config.yaml:12: api: expected a key name, "
			   "got a list\n");
	config_diag_release(&diag);
}

static void test_integer_ranges(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("sync:\n"                                     /* 1 */
		      "  p2p_port: abc\n"                           /* 2 */
		      "  bandwidth:\n"                              /* 3 */
		      "    egress_bits_per_sec: -5\n"               /* 4 */
		      "    ingress_bits_per_sec: 99999999999999999999999\n" /* 5 */
		      "api:\n"                                      /* 6 */
		      "  listen: 127.0.0.1:70000\n",                /* 7 */
		      4, &diag);
	assert_diag(&diag, "config.yaml:2: sync.p2p_port: expected an integer "
			   "from 1 to 65535, got \"abc\"\n");
	assert_diag(&diag, "config.yaml:4: sync.bandwidth.egress_bits_per_sec: "
			   "expected a non-negative integer, got \"-5\"\n");
	assert_diag(&diag, "config.yaml:5: sync.bandwidth.ingress_bits_per_sec: "
			   "expected a non-negative integer, got "
			   "\"99999999999999999999999\" (too large)\n");
	assert_diag(&diag, "config.yaml:7: api.listen: expected host:port or "
			   "[ipv6]:port, got \"127.0.0.1:70000\"");
	config_diag_release(&diag);

	static const char *const bad_ports[] = { "0", "65536", "\"\"", "1.5",
						 "0x10", "+80", "' 80'" };
	for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
		char text[64];

		snprintf(text, sizeof(text), "sync:\n  p2p_port: %s\n",
			 bad_ports[i]);
		expect_errors(text, 1, &diag);
		assert_diag(&diag, "config.yaml:2: sync.p2p_port: expected an "
				   "integer from 1 to 65535, got ");
		config_diag_release(&diag);
	}

	/* The defaults can be written out: 0 is "no limit". */
	struct config *cfg = expect_ok("sync:\n  p2p_port: 65535\n"
				       "  bandwidth:\n"
				       "    egress_bits_per_sec: "
				       "18446744073709551615\n"
				       "    ingress_bits_per_sec: 0\n",
				       NULL, NULL);
	assert_int_equal(cfg->p2p_port, 65535);
	assert_true(cfg->egress_bits_per_sec == UINT64_MAX);
	assert_true(cfg->ingress_bits_per_sec == 0);
	config_free(cfg);
}

/* versions: keep is a duration (7 days by default, "0" keeps none);
 * max_bytes is a size with a binary unit or a share of the volume file
 * system (10% by default). */
static void test_versions(void **state)
{
	static const char *const bad[] = { "0%", "101%", "10 %", "1.5GiB",
					   "20GB", "-1", "abc", "\"\"",
					   "99999999999999999999",
					   "17179869184GiB" };
	struct config_diag diag;
	struct config *cfg;

	(void)state;
	cfg = expect_ok("log:\n  level: info\n", NULL, NULL);
	assert_true(cfg->versions_keep_ms == 7ULL * 24 * 3600 * 1000);
	assert_true(cfg->versions_max_bytes == 0);
	assert_int_equal(cfg->versions_max_percent, 10);
	config_free(cfg);
	cfg = expect_ok("versions:\n  keep: \"0\"\n  max_bytes: \"20GiB\"\n",
			NULL, NULL);
	assert_true(cfg->versions_keep_ms == 0);
	assert_true(cfg->versions_max_bytes == 20ULL << 30);
	assert_int_equal(cfg->versions_max_percent, 0);
	config_free(cfg);
	cfg = expect_ok("versions:\n  max_bytes: \"25%\"\n", NULL, NULL);
	assert_true(cfg->versions_max_bytes == 0);
	assert_int_equal(cfg->versions_max_percent, 25);
	config_free(cfg);
	cfg = expect_ok("versions:\n  max_bytes: 4096\n", NULL, NULL);
	assert_true(cfg->versions_max_bytes == 4096);
	config_free(cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[96];

		snprintf(text, sizeof(text), "versions:\n  max_bytes: %s\n",
			 bad[i]);
		expect_errors(text, 1, &diag);
		assert_diag(&diag, "config.yaml:2: versions.max_bytes: expected "
				   "a size such as \"500MiB\" or \"20GiB\", or "
				   "a share of the volume file system such as "
				   "\"10%\", got ");
		config_diag_release(&diag);
	}
}

/* sync.max_lamport_jump: a count of changes, 0 for no bound, at most
 * the largest Lamport value a change may carry. */
static void test_max_lamport_jump(void **state)
{
	struct config_diag diag;
	struct config *cfg;

	(void)state;
	cfg = expect_ok("sync:\n  max_lamport_jump: 5000\n", NULL, NULL);
	assert_true(cfg->max_lamport_jump == 5000);
	config_free(cfg);
	cfg = expect_ok("sync:\n  max_lamport_jump: 0\n", NULL, NULL);
	assert_true(cfg->max_lamport_jump == 0);
	config_free(cfg);
	cfg = expect_ok("sync:\n  max_lamport_jump: 4611686018427387904\n",
			NULL, NULL);
	assert_true(cfg->max_lamport_jump == UINT64_C(1) << 62);
	config_free(cfg);
	cfg = expect_ok("sync:\n  max_lamport_jump:\n", NULL, NULL);
	assert_true(cfg->max_lamport_jump == 1000000000);
	config_free(cfg);

	expect_errors("sync:\n"                                 /* 1 */
		      "  max_lamport_jump: -5\n",               /* 2 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:2: sync.max_lamport_jump: expected a "
			   "non-negative integer (0: no bound), got \"-5\"\n");
	config_diag_release(&diag);

	static const char *const bad[] = { "1.5", "1e9", "abc", "\"\"",
					   "\"-1\"", "+10", "' 10'", "[1]" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[64];

		snprintf(text, sizeof(text), "sync:\n  max_lamport_jump: %s\n",
			 bad[i]);
		expect_errors(text, 1, &diag);
		assert_diag(&diag, "config.yaml:2: sync.max_lamport_jump: "
				   "expected a non-negative integer (0: no "
				   "bound), got ");
		config_diag_release(&diag);
	}

	expect_errors("sync:\n  max_lamport_jump: 4611686018427387905\n", 1,
		      &diag);
	assert_diag(&diag, "config.yaml:2: sync.max_lamport_jump: expected a "
			   "non-negative integer (0: no bound), got "
			   "\"4611686018427387905\" (at most 2^62 = "
			   "4611686018427387904, the largest Lamport value a "
			   "change may carry)\n");
	config_diag_release(&diag);
	expect_errors("sync:\n  max_lamport_jump: 99999999999999999999999\n",
		      1, &diag);
	assert_diag(&diag, "sync.max_lamport_jump: expected a non-negative "
			   "integer (0: no bound), got "
			   "\"99999999999999999999999\" (too large)\n");
	config_diag_release(&diag);
}

static void test_booleans(void **state)
{
	static const struct {
		const char *text;
		bool value;
	} good[] = {
		{ "true", true }, { "TRUE", true }, { "Yes", true },
		{ "on", true }, { "false", false }, { "No", false },
		{ "OFF", false }, { "\"yes\"", true },
	};
	struct config_diag diag;
	struct config *cfg;
	char text[96];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text),
			 "sync:\n  tls:\n    enable: %s\n", good[i].text);
		cfg = expect_ok(text, NULL, NULL);
		assert_int_equal(cfg->tls_enable, good[i].value);
		config_free(cfg);
	}
	expect_errors("sync:\n"                 /* 1 */
		      "  bandwidth:\n"          /* 2 */
		      "    enable: maybe\n"     /* 3 */
		      "  tls:\n"                /* 4 */
		      "    enable: 1\n",        /* 5 */
		      2, &diag);
	assert_diag(&diag, "config.yaml:3: sync.bandwidth.enable: expected "
			   "true or false, got \"maybe\"\n");
	assert_diag(&diag, "config.yaml:5: sync.tls.enable: expected true or "
			   "false, got \"1\"\n");
	config_diag_release(&diag);
}

static void test_parse_duration(void **state)
{
	static const struct {
		const char *text;
		uint64_t ms;
	} good[] = {
		{ "0", 0 }, { "0ms", 0 }, { "250ms", 250 }, { "30s", 30000 },
		{ "2m", 120000 }, { "1h", 3600000 },
		{ "18446744073709551615ms", UINT64_MAX },
		{ "5124095576030h", 5124095576030ULL * 3600000ULL },
		{ "18446744073709551s", 18446744073709551000ULL },
		{ "0d", 0 }, { "1d", 86400000 }, { "30d", 2592000000ULL },
		{ "213503982334d", 213503982334ULL * 86400000ULL },
	};
	static const char *const bad[] = {
		"", "30", "1", "s", "-1s", "+1s", " 1s", "1s ", "1.5s", "d",
		"1.5d", "1 d", "1dd", "1d12h", "1day", "-1d",
		"1hour", "1h30m", "10 s", "18446744073709551616ms",
		"18446744073709552s", "5124095576031h", "abc",
		"213503982335d",
		"999999999999999999d",
	};
	uint64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = 12345;
		if (config_parse_duration_ms(good[i].text, &ms) != 0)
			fail_msg("rejected \"%s\"", good[i].text);
		assert_true(ms == good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 12345;
		if (config_parse_duration_ms(bad[i], &ms) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_true(ms == 12345);
	}
	assert_int_equal(config_parse_duration_ms(NULL, &ms), -EINVAL);
}

static void test_duration_in_file(void **state)
{
	struct config_diag diag;
	struct config *cfg;

	(void)state;
	cfg = expect_ok("sync:\n  conflict_resolution:\n    timeout: 500ms\n",
			NULL, NULL);
	assert_true(cfg->conflict_timeout_ms == 500);
	config_free(cfg);

	expect_errors("sync:\n"                       /* 1 */
		      "  conflict_resolution:\n"      /* 2 */
		      "    timeout: 30\n",            /* 3 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:3: sync.conflict_resolution.timeout: "
			   "expected a duration such as \"500ms\", \"30s\", "
			   "\"2m\", \"1h\" or \"30d\", got \"30\"\n");
	config_diag_release(&diag);

	cfg = expect_ok("plugin:\n  mount_wait: 2500ms\n", NULL, NULL);
	assert_true(cfg->mount_wait_ms == 2500);
	config_free(cfg);
	cfg = expect_ok("plugin:\n  mount_wait: 0\n", NULL, NULL);
	assert_true(cfg->mount_wait_ms == 0);
	config_free(cfg);
	expect_errors("plugin:\n"                     /* 1 */
		      "  mount_wait: 2m\n",           /* 2 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:2: plugin.mount_wait: expected a "
			   "duration of at most 60s, got 120000 ms (Docker "
			   "gives up on a plugin call after about a minute)\n");
	config_diag_release(&diag);
}

#define DAY_MS 86400000ULL

static void test_journal_retention(void **state)
{
	static const struct {
		const char *retention;
		const char *pin_max;
		uint64_t retention_ms;
		uint64_t pin_max_ms;
	} good[] = {
		{ "7d", "14d", 7 * DAY_MS, 14 * DAY_MS },
		{ "30d", "30d", 30 * DAY_MS, 30 * DAY_MS },
		{ "36h", "2d", 36 * 3600000ULL, 2 * DAY_MS },
		{ "720h", "30d", 30 * DAY_MS, 30 * DAY_MS },
		/* Retention 0 keeps everything: any pin limit goes. */
		{ "0", "0", 0, 0 },
		{ "0", "1ms", 0, 1 },
		{ "0", "7d", 0, 7 * DAY_MS },
		{ "0d", "365d", 0, 365 * DAY_MS },
	};
	struct config *cfg;
	char text[128];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text),
			 "journal:\n  retention: %s\n"
			 "  retention_pin_max: %s\n",
			 good[i].retention, good[i].pin_max);
		cfg = expect_ok(text, NULL, NULL);
		assert_true(cfg->journal_retention_ms == good[i].retention_ms);
		assert_true(cfg->journal_retention_pin_max_ms ==
			    good[i].pin_max_ms);
		config_free(cfg);
	}

	/* Either key alone keeps the other's default. */
	cfg = expect_ok("journal:\n  retention: 7d\n", NULL, NULL);
	assert_true(cfg->journal_retention_ms == 7 * DAY_MS);
	assert_true(cfg->journal_retention_pin_max_ms == 90 * DAY_MS);
	config_free(cfg);
	cfg = expect_ok("journal:\n  retention_pin_max: 120d\n", NULL, NULL);
	assert_true(cfg->journal_retention_ms == 30 * DAY_MS);
	assert_true(cfg->journal_retention_pin_max_ms == 120 * DAY_MS);
	config_free(cfg);
	cfg = expect_ok("journal:\n  retention: 0\n", NULL, NULL);
	assert_true(cfg->journal_retention_ms == 0);
	assert_true(cfg->journal_retention_pin_max_ms == 90 * DAY_MS);
	config_free(cfg);
	cfg = expect_ok("journal:\n  retention:\n  retention_pin_max: ~\n",
			NULL, NULL);
	assert_true(cfg->journal_retention_ms == 30 * DAY_MS);
	assert_true(cfg->journal_retention_pin_max_ms == 90 * DAY_MS);
	config_free(cfg);
}

static void test_journal_pin_max_below_retention(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("journal:\n"                      /* 1 */
		      "  path: /srv/journal.db\n"       /* 2 */
		      "  retention: 30d\n"              /* 3 */
		      "  retention_pin_max: 7d\n",      /* 4 */
		      1, &diag);
	assert_diag(&diag, "/config.yaml:4: journal.retention_pin_max: expected "
			   "a duration of at least journal.retention (30d), "
			   "got 7d (raise it to at least 30d, or lower "
			   "journal.retention)\n");
	config_diag_release(&diag);

	/* Keys in either order; values shown in their largest exact unit. */
	expect_errors("journal:\n"                      /* 1 */
		      "  retention_pin_max: 167h\n"     /* 2 */
		      "  retention: 336h\n",            /* 3 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:2: journal.retention_pin_max: expected "
			   "a duration of at least journal.retention (14d), "
			   "got 167h (");
	config_diag_release(&diag);

	/* Against the default retention, 30d. */
	expect_errors("journal:\n"                      /* 1 */
		      "  retention_pin_max: 29d\n",     /* 2 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:2: journal.retention_pin_max: expected "
			   "a duration of at least journal.retention (30d), "
			   "got 29d (");
	config_diag_release(&diag);

	/* 0 is refused while compaction is on, with its own reason. */
	expect_errors("journal:\n"                      /* 1 */
		      "  retention_pin_max: 0\n",       /* 2 */
		      1, &diag);
	assert_diag(&diag, "/config.yaml:2: journal.retention_pin_max: expected "
			   "a duration of at least journal.retention (30d), "
			   "got 0 (0 would let a peer that is down for a "
			   "moment lose its place)\n");
	config_diag_release(&diag);
	expect_errors("journal:\n"                      /* 1 */
		      "  retention: 1ms\n"              /* 2 */
		      "  retention_pin_max: 0ms\n",     /* 3 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:3: journal.retention_pin_max: expected "
			   "a duration of at least journal.retention (1ms), "
			   "got 0 (0 would let");
	config_diag_release(&diag);

	/* A retention above the default pin limit needs the limit raised;
	 * the default has no line, so the message says which key to set. */
	expect_errors("journal:\n"                      /* 1 */
		      "  retention: 120d\n",            /* 2 */
		      1, &diag);
	assert_diag(&diag, "/config.yaml: journal.retention_pin_max: expected "
			   "a duration of at least journal.retention (120d), "
			   "got 90d (the default; set journal.retention_pin_max "
			   "to at least 120d, or lower journal.retention)\n");
	config_diag_release(&diag);
}

static void test_journal_retention_bad_values(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("journal:\n"                      /* 1 */
		      "  retention: 1x\n"               /* 2 */
		      "  retention_pin_max: 1x\n",      /* 3 */
		      2, &diag);
	assert_diag(&diag, "config.yaml:2: journal.retention: expected a "
			   "duration such as \"500ms\", \"30s\", \"2m\", "
			   "\"1h\" or \"30d\", got \"1x\"\n");
	assert_diag(&diag, "config.yaml:3: journal.retention_pin_max: expected "
			   "a duration such as \"500ms\", \"30s\", \"2m\", "
			   "\"1h\" or \"30d\", got \"1x\"\n");
	config_diag_release(&diag);

	/* A bad value adds no "at least journal.retention" on top. */
	expect_errors("journal:\n"                      /* 1 */
		      "  retention: 1x\n"               /* 2 */
		      "  retention_pin_max: 1d\n",      /* 3 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:2: journal.retention: expected a "
			   "duration");
	assert_no_diag(&diag, "at least");
	config_diag_release(&diag);
	expect_errors("journal:\n"                      /* 1 */
		      "  retention: 400d\n"             /* 2 */
		      "  retention_pin_max: 1x\n",      /* 3 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:3: journal.retention_pin_max: expected "
			   "a duration");
	assert_no_diag(&diag, "at least");
	config_diag_release(&diag);

	expect_errors("journal:\n"                      /* 1 */
		      "  retention: 999999999999999999d\n" /* 2 */
		      "  retention_pin_max: 30\n",      /* 3 */
		      2, &diag);
	assert_diag(&diag, "config.yaml:2: journal.retention: expected a "
			   "duration such as \"500ms\", \"30s\", \"2m\", "
			   "\"1h\" or \"30d\", got \"999999999999999999d\"\n");
	assert_diag(&diag, "config.yaml:3: journal.retention_pin_max: expected "
			   "a duration such as \"500ms\", \"30s\", \"2m\", "
			   "\"1h\" or \"30d\", got \"30\"\n");
	config_diag_release(&diag);

	expect_errors("journal:\n"                      /* 1 */
		      "  retention: [30d]\n"            /* 2 */
		      "  retention_pinmax: 90d\n",      /* 3 */
		      2, &diag);
	assert_diag(&diag, "config.yaml:2: journal.retention: expected a "
			   "duration such as \"500ms\", \"30s\", \"2m\", "
			   "\"1h\" or \"30d\", got a list\n");
	assert_diag(&diag, "config.yaml:3: journal.retention_pinmax: unknown "
			   "key, did you mean journal.retention_pin_max?\n");
	config_diag_release(&diag);
}

static void test_log_level(void **state)
{
	struct config_diag diag;
	struct config *cfg;

	(void)state;
	cfg = expect_ok("log:\n  level: DEBUG\n", NULL, NULL);
	assert_int_equal(cfg->log_level, LOG_DEBUG);
	config_free(cfg);
	cfg = expect_ok("log:\n  level: warn\n", NULL, NULL);
	assert_int_equal(cfg->log_level, LOG_WARN);
	config_free(cfg);
	cfg = expect_ok("log:\n  level: error\n", NULL, NULL);
	assert_int_equal(cfg->log_level, LOG_ERROR);
	config_free(cfg);

	expect_errors("\nlog:\n  level: verbose\n", 1, &diag);
	assert_diag(&diag, "config.yaml:3: log.level: expected one of error, "
			   "warn, info, debug, got \"verbose\"\n");
	config_diag_release(&diag);
}

static void test_strategy(void **state)
{
	struct config_diag diag;
	struct config *cfg;

	(void)state;
	cfg = expect_ok("sync:\n  conflict_resolution:\n"
			"    strategy: lamport\n", NULL, NULL);
	assert_int_equal(cfg->strategy, CONFIG_STRATEGY_LAMPORT);
	config_free(cfg);

	expect_errors("sync:\n  conflict_resolution:\n"
		      "    strategy: newest\n", 1, &diag);
	assert_diag(&diag, "config.yaml:3: sync.conflict_resolution.strategy: "
			   "expected timestamp or lamport, got \"newest\"\n");
	config_diag_release(&diag);
}

static void test_invalid_node_ids(void **state)
{
	static const char *const bad[] = {
		"\"vm 1\"", "\"\"", "vm/1", "..", "\"vm\\u00e9\"",
		"a1234567890123456789012345678901234567890123456789012345678901234",
	};
	struct config_diag diag;
	struct config *cfg;
	char text[160];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "sync:\n  node_id: %s\n", bad[i]);
		expect_errors(text, 1, &diag);
		assert_diag(&diag, "config.yaml:2: sync.node_id: expected a "
				   "node id of 1 to 64 characters from A-Z "
				   "a-z 0-9 . _ -, got ");
		config_diag_release(&diag);
	}
	/* 64 characters and every allowed character class are fine. */
	cfg = expect_ok("sync:\n  node_id: "
			"A_b-9.x23456789012345678901234567890123456789012345678"
			"9012345678\n", NULL, NULL);
	assert_int_equal(strlen(cfg->node_id), 64);
	config_free(cfg);
}

static void test_cluster_nodes_valid(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok("sync:\n"
			"  node_id: a\n"
			"  cluster_nodes:\n"
			"    - a:10.0.0.1\n"
			"    - b:10.0.0.2:7000\n"
			"    - c:[fe80::1]\n"
			"    - d:[2001:db8::2]:7001\n"
			"    - e:node-e.example.com:7002\n"
			"    - f_1.x:localhost\n", NULL, NULL);
	assert_int_equal(cfg->n_peers, 6);
	assert_string_equal(cfg->peers[0].host, "10.0.0.1");
	assert_int_equal(cfg->peers[0].port, 6881);
	assert_string_equal(cfg->peers[1].host, "10.0.0.2");
	assert_int_equal(cfg->peers[1].port, 7000);
	assert_string_equal(cfg->peers[2].host, "fe80::1");
	assert_int_equal(cfg->peers[2].port, 6881);
	assert_string_equal(cfg->peers[3].id, "d");
	assert_string_equal(cfg->peers[3].host, "2001:db8::2");
	assert_int_equal(cfg->peers[3].port, 7001);
	assert_string_equal(cfg->peers[4].host, "node-e.example.com");
	assert_int_equal(cfg->peers[4].port, 7002);
	assert_string_equal(cfg->peers[5].id, "f_1.x");
	assert_string_equal(cfg->peers[5].host, "localhost");
	config_free(cfg);
}

static void test_cluster_nodes_invalid(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("sync:\n"                              /* 1 */
		      "  node_id: vm1\n"                     /* 2 */
		      "  cluster_nodes:\n"                   /* 3 */
		      "    - vm1:10.0.0.1\n"                 /* 4 */
		      "    - vm2\n"                          /* 5 */
		      "    - \"vm 3:10.0.0.3\"\n"            /* 6 */
		      "    - \"vm4:\"\n"                     /* 7 */
		      "    - vm5:10.0.0.5:0\n"               /* 8 */
		      "    - vm6:10.0.0.6:99999\n"           /* 9 */
		      "    - vm7:fe80::1\n"                  /* 10 */
		      "    - vm8:[fe80::1\n"                 /* 11 */
		      "    - vm9:[nothex]:1\n"               /* 12 */
		      "    - vm10:300.1.2.3\n"               /* 13 */
		      "    - vm11:bad_host!\n"               /* 14 */
		      "    - {vm12: x}\n",                   /* 15 */
		      11, &diag);
	assert_diag(&diag, "config.yaml:5: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm2\" (missing ':' "
			   "between the node id and the host)\n");
	assert_diag(&diag, "config.yaml:6: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm 3:10.0.0.3\" "
			   "(invalid node id)\n");
	assert_diag(&diag, "config.yaml:7: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm4:\" (missing host)\n");
	assert_diag(&diag, "config.yaml:8: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm5:10.0.0.5:0\" (the port "
			   "must be an integer from 1 to 65535)\n");
	assert_diag(&diag, "config.yaml:9: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm6:10.0.0.6:99999\"");
	assert_diag(&diag, "config.yaml:10: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm7:fe80::1\" (IPv6 "
			   "addresses must be written in brackets)\n");
	assert_diag(&diag, "config.yaml:11: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm8:[fe80::1\"");
	assert_diag(&diag, "config.yaml:12: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm9:[nothex]:1\" "
			   "(invalid IPv6 address)\n");
	assert_diag(&diag, "config.yaml:13: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm10:300.1.2.3\" "
			   "(invalid IPv4 address)\n");
	assert_diag(&diag, "config.yaml:14: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got \"vm11:bad_host!\" "
			   "(invalid host name)\n");
	assert_diag(&diag, "config.yaml:15: sync.cluster_nodes: expected "
			   "\"id:host[:port]\", got a mapping\n");
	/* The bad entries must not add a "vm1 is not listed" on top. */
	assert_no_diag(&diag, "sync.node_id");
	config_diag_release(&diag);

	expect_errors("sync:\n  cluster_nodes: vm1:10.0.0.1\n", 1, &diag);
	assert_diag(&diag, "config.yaml:2: sync.cluster_nodes: expected a list "
			   "of \"id:host[:port]\" entries, got "
			   "\"vm1:10.0.0.1\"\n");
	config_diag_release(&diag);
}

static void test_duplicate_node_ids(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("sync:\n"                      /* 1 */
		      "  node_id: vm1\n"             /* 2 */
		      "  cluster_nodes:\n"           /* 3 */
		      "    - vm2:10.0.0.2\n"         /* 4 */
		      "    - vm1:10.0.0.1\n"         /* 5 */
		      "    - vm2:10.0.0.3\n"         /* 6 */
		      "    - vm3:10.0.0.4\n"         /* 7 */
		      "    - vm1:10.0.0.5\n"         /* 8 */
		      "    - vm2:10.0.0.6\n",        /* 9 */
		      3, &diag);
	assert_diag(&diag, "config.yaml:6: sync.cluster_nodes: duplicate node "
			   "id \"vm2\" (first at line 4)\n");
	assert_diag(&diag, "config.yaml:8: sync.cluster_nodes: duplicate node "
			   "id \"vm1\" (first at line 5)\n");
	assert_diag(&diag, "config.yaml:9: sync.cluster_nodes: duplicate node "
			   "id \"vm2\" (first at line 4)\n");
	/* Reported in file order. */
	assert_true(strstr(diag.text, "config.yaml:6:") <
		    strstr(diag.text, "config.yaml:8:"));
	config_diag_release(&diag);
}

static void test_node_missing_from_cluster(void **state)
{
	struct config_diag diag;
	char host[256], want[512];

	(void)state;
	expect_errors("sync:\n"                      /* 1 */
		      "  cluster_nodes:\n"           /* 2 */
		      "    - vm1:10.0.0.1\n"         /* 3 */
		      "    - vm2:10.0.0.2\n"         /* 4 */
		      "  node_id: vm3\n",            /* 5 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:5: sync.node_id: expected a node id "
			   "listed in sync.cluster_nodes, got \"vm3\"\n");
	config_diag_release(&diag);

	/* Without sync.node_id the host name is checked, with no line. */
	short_hostname(host, sizeof(host));
	expect_errors("sync:\n  cluster_nodes:\n"
		      "    - not-this-host-at-all:10.0.0.1\n", 1, &diag);
	snprintf(want, sizeof(want),
		 "config.yaml: sync.node_id: expected a node id listed in "
		 "sync.cluster_nodes, got \"%s\" (the host name; set "
		 "sync.node_id or NODE_ID)\n", host);
	assert_diag(&diag, want);
	config_diag_release(&diag);
}

static void test_relative_paths(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("volume:\n"                               /* 1 */
		      "  root_path: var/lib/krakenfs\n"         /* 2 */
		      "journal:\n"                              /* 3 */
		      "  path: ./journal.db\n"                  /* 4 */
		      "api:\n"                                  /* 5 */
		      "  token_file: token\n"                   /* 6 */
		      "sync:\n"                                 /* 7 */
		      "  tls:\n"                                /* 8 */
		      "    cert_file: cert.pem\n"               /* 9 */
		      "plugin:\n"                               /* 10 */
		      "  socket: krakenfs.sock\n"               /* 11 */
		      "filesystem:\n"                           /* 12 */
		      "  watch_paths:\n"                        /* 13 */
		      "    - volumes/a\n",                      /* 14 */
		      6, &diag);
	assert_diag(&diag, "config.yaml:2: volume.root_path: expected an "
			   "absolute path, got \"var/lib/krakenfs\"\n");
	assert_diag(&diag, "config.yaml:4: journal.path: expected an absolute "
			   "path, got \"./journal.db\"\n");
	assert_diag(&diag, "config.yaml:6: api.token_file: expected an "
			   "absolute path, got \"token\"\n");
	assert_diag(&diag, "config.yaml:9: sync.tls.cert_file: expected an "
			   "absolute path, got \"cert.pem\"\n");
	assert_diag(&diag, "config.yaml:11: plugin.socket: expected an "
			   "absolute path shorter than 108 bytes, got "
			   "\"krakenfs.sock\"\n");
	assert_diag(&diag, "config.yaml:14: filesystem.watch_paths: expected "
			   "an absolute path, got \"volumes/a\"\n");
	config_diag_release(&diag);

	/* 107 bytes fit in sun_path with the NUL; 108 do not. */
	char text[256];

	snprintf(text, sizeof(text), "plugin:\n  socket: /%.106s\n",
		 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	config_free(expect_ok(text, NULL, NULL));
	snprintf(text, sizeof(text), "plugin:\n  socket: /%.107s\n",
		 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	expect_errors(text, 1, &diag);
	assert_diag(&diag, "config.yaml:2: plugin.socket: expected an absolute "
			   "path shorter than 108 bytes");
	config_diag_release(&diag);
}

static void test_paths_and_other_values(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok("volume:\n"
			"  root_path: /srv/volumes//\n"
			"  driver_name: kfs.v2\n"
			"journal:\n"
			"  path: /srv/state/journal.db\n"
			"api:\n"
			"  token_file: /srv/token\n"
			"plugin:\n"
			"  socket: /run/kfs.sock\n"
			"filesystem:\n"
			"  watch_paths:\n"
			"    - /srv/volumes/a/\n"
			"    - /srv/volumes\n"
			"sync:\n"
			"  listen_address: \"::\"\n"
			"  cluster_id: \"prod cluster 1\"\n"
			"  tls:\n"
			"    enable: yes\n"
			"    cert_file: /etc/k/c.pem\n"
			"    key_file: /etc/k/k.pem\n"
			"    ca_file: /etc/k/ca.pem\n", NULL, NULL);
	assert_string_equal(cfg->root_path, "/srv/volumes");
	assert_string_equal(cfg->driver_name, "kfs.v2");
	assert_string_equal(cfg->journal_path, "/srv/state/journal.db");
	assert_string_equal(cfg->api_token_file, "/srv/token");
	assert_string_equal(cfg->plugin_socket, "/run/kfs.sock");
	assert_int_equal(cfg->n_watch_paths, 2);
	assert_string_equal(cfg->watch_paths[0], "/srv/volumes/a");
	assert_string_equal(cfg->watch_paths[1], "/srv/volumes");
	assert_string_equal(cfg->listen_address, "::");
	assert_string_equal(cfg->cluster_id, "prod cluster 1");
	assert_true(cfg->tls_enable);
	assert_string_equal(cfg->tls_cert_file, "/etc/k/c.pem");
	assert_string_equal(cfg->tls_key_file, "/etc/k/k.pem");
	assert_string_equal(cfg->tls_ca_file, "/etc/k/ca.pem");
	config_free(cfg);

	/* "/" keeps its slash, and a volume directly under "/" is fine. */
	cfg = expect_ok("volume:\n  root_path: /\nfilesystem:\n"
			"  watch_paths: [/data]\n", NULL, NULL);
	assert_string_equal(cfg->root_path, "/");
	assert_string_equal(cfg->watch_paths[0], "/data");
	config_free(cfg);

	struct config_diag diag;

	expect_errors("sync:\n"                          /* 1 */
		      "  listen_address: localhost\n"    /* 2 */
		      "  cluster_id: \"\"\n"             /* 3 */
		      "volume:\n"                        /* 4 */
		      "  driver_name: KrakenFS\n",       /* 5 */
		      3, &diag);
	assert_diag(&diag, "config.yaml:2: sync.listen_address: expected an "
			   "IPv4 or IPv6 address, got \"localhost\"\n");
	assert_diag(&diag, "config.yaml:3: sync.cluster_id: expected a name "
			   "of 1 to 255 printable characters, got an empty "
			   "value\n");
	assert_diag(&diag, "config.yaml:5: volume.driver_name: expected a name "
			   "of 1 to 64 characters from a-z 0-9 . _ -, got "
			   "\"KrakenFS\"\n");
	config_diag_release(&diag);
}

static void test_watch_paths_must_be_volumes(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("filesystem:\n"                           /* 1 */
		      "  watch_paths:\n"                        /* 2 */
		      "    - /srv/volumes/a\n"                  /* 3 */
		      "    - /srv/other\n"                      /* 4 */
		      "    - /srv/volumes/a/b\n"                /* 5 */
		      "    - /srv/volumes/..\n"                 /* 6 */
		      "    - /srv/volumesX\n"                   /* 7 */
		      "volume:\n"                               /* 8 */
		      "  root_path: /srv/volumes\n",            /* 9 */
		      4, &diag);
	assert_diag(&diag, "config.yaml:4: filesystem.watch_paths: expected "
			   "volume.root_path (\"/srv/volumes\") or a directory "
			   "directly under it, got \"/srv/other\"\n");
	assert_diag(&diag, "config.yaml:5: filesystem.watch_paths: expected "
			   "volume.root_path (\"/srv/volumes\") or a directory "
			   "directly under it, got \"/srv/volumes/a/b\"\n");
	assert_diag(&diag, "config.yaml:6: filesystem.watch_paths:");
	assert_diag(&diag, "config.yaml:7: filesystem.watch_paths:");
	assert_no_diag(&diag, "config.yaml:3:");
	config_diag_release(&diag);
}

static void test_watch_paths_default_follows_root(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok("volume:\n  root_path: /data/kfs/\n", NULL, NULL);
	assert_string_equal(cfg->root_path, "/data/kfs");
	assert_int_equal(cfg->n_watch_paths, 1);
	assert_string_equal(cfg->watch_paths[0], "/data/kfs");
	config_free(cfg);

	/* An empty list means the default too. */
	cfg = expect_ok("filesystem:\n  watch_paths: []\n"
			"volume:\n  root_path: /data/kfs\n", NULL, NULL);
	assert_int_equal(cfg->n_watch_paths, 1);
	assert_string_equal(cfg->watch_paths[0], "/data/kfs");
	config_free(cfg);
}

static void test_recursive_false(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("filesystem:\n  recursive: false\n", 1, &diag);
	assert_diag(&diag, "config.yaml:2: filesystem.recursive: expected "
			   "true, got \"false\" (not supported: volumes "
			   "replicate as whole trees)\n");
	config_diag_release(&diag);

	expect_errors("filesystem:\n  recursive: sometimes\n", 1, &diag);
	assert_diag(&diag, "config.yaml:2: filesystem.recursive: expected "
			   "true, got \"sometimes\"\n");
	config_diag_release(&diag);
}

static void test_duplicate_keys(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("sync:\n"                  /* 1 */
		      "  p2p_port: 7000\n"       /* 2 */
		      "  p2p_port: 7001\n"       /* 3 */
		      "volume:\n"                /* 4 */
		      "  root_path: /a\n"        /* 5 */
		      "volume:\n"                /* 6 */
		      "  root_path: /b\n",       /* 7 */
		      2, &diag);
	assert_diag(&diag, "config.yaml:3: sync.p2p_port: duplicate key (first "
			   "at line 2)\n");
	assert_diag(&diag, "config.yaml:6: volume: duplicate key (first at "
			   "line 4)\n");
	config_diag_release(&diag);
}

static void test_yaml_syntax_error(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("log:\n"                  /* 1 */
		      "  level: info\n"         /* 2 */
		      "sync:\n"                 /* 3 */
		      "  node_id: \"vm1\n"      /* 4: unterminated quote */
		      "  p2p_port: 1\n",        /* 5 */
		      1, &diag);
	assert_diag(&diag, "config.yaml:");
	assert_diag(&diag, ": invalid yaml: found unexpected end of stream "
			   "(while scanning a quoted scalar at line 4)");
	config_diag_release(&diag);

	expect_errors("sync:\n"                 /* 1 */
		      "  node_id: vm1\n"        /* 2 */
		      " p2p_port: 1\n",         /* 3: bad indentation */
		      1, &diag);
	assert_diag(&diag, "config.yaml:3: invalid yaml: ");
	config_diag_release(&diag);

	expect_errors("a: [1, 2\n", 1, &diag);
	assert_diag(&diag, "invalid yaml: did not find expected ',' or ']'");
	config_diag_release(&diag);
}

static void test_top_level_not_mapping(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("# a list\n- log\n- sync\n", 1, &diag);
	assert_diag(&diag, "config.yaml:2: expected a mapping of sections at "
			   "the top level, got a list\n");
	config_diag_release(&diag);

	expect_errors("just text\n", 1, &diag);
	assert_diag(&diag, "config.yaml:1: expected a mapping of sections at "
			   "the top level, got \"just text\"\n");
	config_diag_release(&diag);
}

static void test_aliases(void **state)
{
	struct config_diag diag;
	struct config *cfg;
	char *bomb;
	size_t len = 0, cap = 1 << 16;

	(void)state;
	/* Aliases resolve to their anchor's value. */
	cfg = expect_ok("volume:\n"
			"  root_path: &root /srv/volumes\n"
			"filesystem:\n"
			"  watch_paths: [*root]\n", NULL, NULL);
	assert_string_equal(cfg->watch_paths[0], "/srv/volumes");
	config_free(cfg);

	/* A section aliased into itself: reported, not looped on. */
	expect_errors("sync: &s\n"
		      "  bandwidth: *s\n", 1, &diag);
	assert_diag(&diag, "sync.bandwidth.bandwidth: unknown key");
	config_diag_release(&diag);

	expect_errors("sync:\n  node_id: *nowhere\n", 1, &diag);
	assert_diag(&diag, "config.yaml:2: invalid yaml: found undefined alias");
	config_diag_release(&diag);

	/* Billion laughs: nine levels of ten aliases each. */
	bomb = malloc(cap);
	assert_non_null(bomb);
	len += (size_t)snprintf(bomb + len, cap - len, "a0: &a0 [x]\n");
	for (int i = 1; i < 10; i++) {
		len += (size_t)snprintf(bomb + len, cap - len, "a%d: &a%d [", i, i);
		for (int j = 0; j < 10; j++)
			len += (size_t)snprintf(bomb + len, cap - len, "%s*a%d",
						j ? "," : "", i - 1);
		len += (size_t)snprintf(bomb + len, cap - len, "]\n");
	}
	len += (size_t)snprintf(bomb + len, cap - len,
				"filesystem:\n  exclude_patterns: *a9\n"
				"  watch_paths: *a9\n");
	expect_errors(bomb, 30, &diag);
	assert_diag(&diag, "filesystem.exclude_patterns: expected a non-empty "
			   "pattern, got a list");
	assert_diag(&diag, "a9: unknown key");
	config_diag_release(&diag);
	free(bomb);
}

static void test_file_too_large(void **state)
{
	size_t size = 1024 * 1024 + 1;
	char *text = malloc(size);
	struct config_diag diag = { 0 };
	struct config *cfg = (struct config *)1;

	(void)state;
	assert_non_null(text);
	memset(text, '#', size);
	text[size - 1] = '\n';
	write_file(text, size);
	assert_int_equal(config_load(cfg_path, NULL, NULL, &cfg, &diag),
			 KR_ECONFIG);
	assert_null(cfg);
	assert_int_equal(diag.count, 1);
	assert_diag(&diag, "config.yaml: file is larger than 1 MiB\n");
	config_diag_release(&diag);

	/* Exactly 1 MiB of comments is fine. */
	write_file(text, size - 1);
	assert_int_equal(config_load(cfg_path, NULL, NULL, &cfg, &diag), 0);
	config_free(cfg);
	config_diag_release(&diag);
	free(text);
}

static void test_multiple_documents(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("log:\n  level: info\n---\nlog:\n  level: debug\n", 1,
		      &diag);
	assert_diag(&diag, "config.yaml:3: expected one yaml document, got a "
			   "second one\n");
	config_diag_release(&diag);
}

static void test_all_problems_reported(void **state)
{
	struct config_diag diag;
	const char *line;
	unsigned lines = 0;

	(void)state;
	expect_errors("log:\n"                          /* 1 */
		      "  level: loud\n"                 /* 2 */
		      "filesystem:\n"                   /* 3 */
		      "  recursive: false\n"            /* 4 */
		      "sync:\n"                         /* 5 */
		      "  node_id: \"bad id\"\n"         /* 6 */
		      "  p2p_port: 0\n"                 /* 7 */
		      "  conflict_resolution:\n"        /* 8 */
		      "    timeout: soon\n"             /* 9 */
		      "  extra: 1\n"                    /* 10 */
		      "volume:\n"                       /* 11 */
		      "  root_path: rel\n",             /* 12 */
		      7, &diag);
	assert_diag(&diag, "config.yaml:2: log.level:");
	assert_diag(&diag, "config.yaml:4: filesystem.recursive:");
	assert_diag(&diag, "config.yaml:6: sync.node_id:");
	assert_diag(&diag, "config.yaml:7: sync.p2p_port:");
	assert_diag(&diag, "config.yaml:9: sync.conflict_resolution.timeout:");
	assert_diag(&diag, "config.yaml:10: sync.extra: unknown key");
	assert_diag(&diag, "config.yaml:12: volume.root_path:");
	/* One line per problem, no trailing period. */
	for (line = diag.text; *line; line = strchr(line, '\n') + 1) {
		const char *end = strchr(line, '\n');

		assert_non_null(end);
		assert_true(end > line && end[-1] != '.');
		lines++;
	}
	assert_int_equal(lines, diag.count);
	config_diag_release(&diag);
}

static void test_env_overrides_win(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok(seed_yaml, "vm2",
			" vm1:10.0.0.1 ,vm2:10.0.0.2:7000,\tvm3:[::1]:7001 ");
	assert_string_equal(cfg->node_id, "vm2");
	assert_int_equal(cfg->n_peers, 3);
	assert_string_equal(cfg->peers[0].id, "vm1");
	assert_string_equal(cfg->peers[0].host, "10.0.0.1");
	assert_int_equal(cfg->peers[0].port, 6881);
	assert_string_equal(cfg->peers[1].host, "10.0.0.2");
	assert_int_equal(cfg->peers[1].port, 7000);
	assert_string_equal(cfg->peers[2].host, "::1");
	assert_int_equal(cfg->peers[2].port, 7001);
	assert_string_equal(config_self(cfg)->id, "vm2");
	config_free(cfg);

	/* Without a file, and with an empty variable counting as unset. */
	struct config_diag diag = { 0 };

	assert_int_equal(config_load(NULL, "n1", "", &cfg, &diag), 0);
	assert_string_equal(cfg->node_id, "n1");
	assert_int_equal(cfg->n_peers, 1);
	assert_string_equal(cfg->peers[0].id, "n1");
	assert_string_equal(cfg->peers[0].host, "127.0.0.1");
	config_free(cfg);
	config_diag_release(&diag);
}

static void test_env_errors(void **state)
{
	struct config_diag diag;
	struct config *cfg = (struct config *)1;

	(void)state;
	assert_int_equal(load(seed_yaml, "bad/id", "vm1:10.0.0.1,vm2,,vm1:h",
			      &cfg, &diag), KR_ECONFIG);
	assert_null(cfg);
	assert_diag(&diag, "NODE_ID: expected a node id of 1 to 64 characters "
			   "from A-Z a-z 0-9 . _ -, got \"bad/id\"\n");
	assert_diag(&diag, "CLUSTER_NODES: expected \"id:host[:port]\", got "
			   "\"vm2\" (missing ':' between the node id and the "
			   "host)\n");
	assert_diag(&diag, "CLUSTER_NODES: expected \"id:host[:port]\", got "
			   "\"\"");
	assert_diag(&diag, "CLUSTER_NODES: duplicate node id \"vm1\"\n");
	assert_int_equal(diag.count, 4);
	/* Environment problems carry neither the file nor a line. */
	assert_no_diag(&diag, "config.yaml");
	assert_true(strncmp(diag.text, "NODE_ID: ", 9) == 0);
	config_diag_release(&diag);
}

static void test_env_node_missing_from_cluster(void **state)
{
	struct config_diag diag;
	struct config *cfg = (struct config *)1;

	(void)state;
	assert_int_equal(load(seed_yaml, "vm9", NULL, &cfg, &diag), KR_ECONFIG);
	assert_int_equal(diag.count, 1);
	assert_string_equal(diag.text, "NODE_ID: expected a node id listed in "
				       "sync.cluster_nodes, got \"vm9\"\n");
	config_diag_release(&diag);

	assert_int_equal(load(seed_yaml, NULL, "a:10.0.0.1,b:10.0.0.2", &cfg,
			      &diag), KR_ECONFIG);
	assert_int_equal(diag.count, 1);
	assert_diag(&diag, "config.yaml:13: sync.node_id: expected a node id "
			   "listed in CLUSTER_NODES, got \"vm1\"\n");
	config_diag_release(&diag);
}

static void test_api_listen(void **state)
{
	static const struct {
		const char *text;
		const char *host;
		uint16_t port;
	} good[] = {
		{ "127.0.0.1:6882", "127.0.0.1", 6882 },
		{ "0.0.0.0:80", "0.0.0.0", 80 },
		{ "localhost:8080", "localhost", 8080 },
		{ "\"[::1]:7000\"", "::1", 7000 },
		{ "\"[::]:1\"", "::", 1 },
	};
	static const char *const bad[] = {
		"localhost", "\"[::1]\"", "\"::1:80\"", "host:0", "\":80\"",
		"\"[::1]x:80\"", "host:http",
	};
	struct config_diag diag;
	struct config *cfg;
	char text[96];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "api:\n  listen: %s\n",
			 good[i].text);
		cfg = expect_ok(text, NULL, NULL);
		assert_string_equal(cfg->api_host, good[i].host);
		assert_int_equal(cfg->api_port, good[i].port);
		config_free(cfg);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "api:\n  listen: %s\n", bad[i]);
		expect_errors(text, 1, &diag);
		assert_diag(&diag, "config.yaml:2: api.listen: expected "
				   "host:port or [ipv6]:port, got ");
		config_diag_release(&diag);
	}
}

static void test_api_read_token_and_hosts(void **state)
{
	struct config_diag diag;
	struct config *cfg;
	char text[2048], name[300];
	size_t len;

	(void)state;
	cfg = expect_ok("api:\n"
			"  read_token_file: /srv/read-token/\n"
			"  allowed_hosts:\n"
			"    - nas.lan\n"
			"    - \"[fd00::1]\"\n"
			"    - \"::1\"\n"
			"    - 10.0.0.2\n", NULL, NULL);
	assert_string_equal(cfg->api_read_token_file, "/srv/read-token");
	assert_int_equal(cfg->n_api_allowed_hosts, 4);
	assert_string_equal(cfg->api_allowed_hosts[0], "nas.lan");
	assert_string_equal(cfg->api_allowed_hosts[1], "[fd00::1]");
	assert_string_equal(cfg->api_allowed_hosts[2], "::1");
	assert_string_equal(cfg->api_allowed_hosts[3], "10.0.0.2");
	config_free(cfg);
	cfg = expect_ok("api:\n  read_token_file:\n  allowed_hosts: []\n",
			NULL, NULL);
	assert_null(cfg->api_read_token_file);
	assert_int_equal(cfg->n_api_allowed_hosts, 0);
	config_free(cfg);

	expect_errors("api:\n"                                  /* 1 */
		      "  read_token_file: read-token\n"         /* 2 */
		      "  allowed_hosts:\n"                      /* 3 */
		      "    - ok.example\n"                      /* 4 */
		      "    - \"\"\n"                            /* 5 */
		      "    - \"two words\"\n"                   /* 6 */
		      "    - \"nas.lan:8080\"\n"                /* 7 */
		      "    - \"tab\\there\"\n"                  /* 8 */
		      "    - \"[fd00::1\"\n"                    /* 9 */
		      "    - [nested]\n",                       /* 10 */
		      7, &diag);
	assert_diag(&diag, "config.yaml:2: api.read_token_file: expected an "
			   "absolute path, got \"read-token\"\n");
	assert_diag(&diag, "config.yaml:5: api.allowed_hosts: expected a host "
			   "name or address of 1 to 255 bytes, without spaces, "
			   "control characters or a port, got \"\"\n");
	assert_diag(&diag, "config.yaml:6: api.allowed_hosts: expected a host "
			   "name or address");
	assert_diag(&diag, "got \"two words\"\n");
	assert_diag(&diag, "config.yaml:7: api.allowed_hosts: ");
	assert_diag(&diag, "got \"nas.lan:8080\"\n");
	assert_diag(&diag, "config.yaml:8: api.allowed_hosts: ");
	assert_diag(&diag, "got \"tab\\x09here\"\n");
	assert_diag(&diag, "config.yaml:9: api.allowed_hosts: ");
	assert_diag(&diag, "config.yaml:10: api.allowed_hosts: ");
	config_diag_release(&diag);

	expect_errors("api:\n  allowed_hosts: nas.lan\n", 1, &diag);
	assert_diag(&diag, "config.yaml:2: api.allowed_hosts: expected a list "
			   "of host names, got \"nas.lan\"\n");
	config_diag_release(&diag);

	/* 255 bytes and 32 entries fit; 256 bytes and 33 entries do not. */
	memset(name, 'a', 256);
	name[255] = '\0';
	snprintf(text, sizeof(text), "api:\n  allowed_hosts:\n    - %s\n",
		 name);
	cfg = expect_ok(text, NULL, NULL);
	assert_int_equal(strlen(cfg->api_allowed_hosts[0]), 255);
	config_free(cfg);
	name[255] = 'a';
	name[256] = '\0';
	snprintf(text, sizeof(text), "api:\n  allowed_hosts:\n    - %s\n",
		 name);
	expect_errors(text, 1, &diag);
	assert_diag(&diag, "config.yaml:3: api.allowed_hosts: expected a host "
			   "name");
	config_diag_release(&diag);
	len = (size_t)snprintf(text, sizeof(text), "api:\n  allowed_hosts:\n");
	for (int i = 0; i < 32; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"    - h%d.lan\n", i);
	cfg = expect_ok(text, NULL, NULL);
	assert_int_equal(cfg->n_api_allowed_hosts, 32);
	assert_string_equal(cfg->api_allowed_hosts[31], "h31.lan");
	config_free(cfg);
	snprintf(text + len, sizeof(text) - len, "    - h32.lan\n");
	expect_errors(text, 1, &diag);
	assert_diag(&diag, "config.yaml:2: api.allowed_hosts: expected at most "
			   "32 host names, got 33 entries\n");
	config_diag_release(&diag);
}

static void test_nul_and_control_bytes(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("sync:\n  node_id: \"vm\\0x\"\n", 1, &diag);
	assert_diag(&diag, "config.yaml:2: sync.node_id: expected a node id of "
			   "1 to 64 characters from A-Z a-z 0-9 . _ -, got "
			   "\"vm\\x00x\" (contains a NUL byte)\n");
	config_diag_release(&diag);

	/* A newline inside a value must not split the diagnostic line. */
	expect_errors("log:\n  level: \"in\\nfo\"\n", 1, &diag);
	assert_diag(&diag, "got \"in\\x0afo\"\n");
	config_diag_release(&diag);
}

static void test_invalid_utf8(void **state)
{
	struct config_diag diag;

	(void)state;
	expect_errors("log:\n  level: info\nsync:\n  node_id: \xff\xfe\n", 1,
		      &diag);
	assert_diag(&diag, "config.yaml:4: invalid yaml: ");
	config_diag_release(&diag);
}

static void test_null_values_keep_defaults(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok("log:\n"
			"  level: ~\n"
			"filesystem:\n"
			"  watch_paths:\n"
			"  exclude_patterns: null\n"
			"sync:\n"
			"  node_id:\n"
			"  bandwidth:\n"
			"volume:\n", NULL, NULL);
	assert_default_values(cfg);
	config_free(cfg);
}

static void test_peer_port_follows_p2p_port(void **state)
{
	struct config *cfg;

	(void)state;
	/* p2p_port comes after the list: the default must still apply. */
	cfg = expect_ok("sync:\n"
			"  node_id: vm1\n"
			"  cluster_nodes: [\"vm1:10.0.0.1\", \"vm2:10.0.0.2:9\"]\n"
			"  p2p_port: 7777\n", NULL, NULL);
	assert_int_equal(cfg->peers[0].port, 7777);
	assert_int_equal(cfg->peers[1].port, 9);
	config_free(cfg);

	cfg = expect_ok("sync:\n  node_id: solo\n  p2p_port: 7100\n", NULL,
			NULL);
	assert_int_equal(cfg->n_peers, 1);
	assert_string_equal(cfg->peers[0].id, "solo");
	assert_string_equal(cfg->peers[0].host, "127.0.0.1");
	assert_int_equal(cfg->peers[0].port, 7100);
	config_free(cfg);
}

static void test_diag_appends_and_may_be_null(void **state)
{
	struct config_diag diag = { 0 };
	struct config *cfg = (struct config *)1;

	(void)state;
	write_file("sync:\n  p2p_port: 0\n", 20);
	assert_int_equal(config_load(cfg_path, NULL, NULL, &cfg, &diag),
			 KR_ECONFIG);
	assert_int_equal(config_load(cfg_path, NULL, NULL, &cfg, &diag),
			 KR_ECONFIG);
	assert_int_equal(diag.count, 2);
	assert_int_equal(diag.len, strlen(diag.text));
	assert_non_null(strstr(strstr(diag.text, "p2p_port") + 1, "p2p_port"));
	config_diag_release(&diag);

	assert_int_equal(config_load(cfg_path, NULL, NULL, &cfg, NULL),
			 KR_ECONFIG);
	assert_null(cfg);
	config_free(NULL);
	config_diag_release(NULL);
}

static void test_many_problems_grow_diag(void **state)
{
	size_t cap = 400000, len = 0;
	char *text = malloc(cap);
	struct config_diag diag;

	(void)state;
	assert_non_null(text);
	for (int i = 0; i < 20000; i++)
		len += (size_t)snprintf(text + len, cap - len, "k%d: 1\n", i);
	expect_errors(text, 20000, &diag);
	assert_diag(&diag, "config.yaml:1: k0: unknown key\n");
	assert_diag(&diag, "config.yaml:20000: k19999: unknown key\n");
	assert_int_equal(diag.len, strlen(diag.text));
	config_diag_release(&diag);
	free(text);
}

static void test_deep_nesting(void **state)
{
	/* Half a MiB of '[': libyaml alone would take minutes on this. */
	size_t depth = 500000;
	char *text = malloc(2 * depth + 16);
	struct config_diag diag;
	size_t len = 0;

	(void)state;
	assert_non_null(text);
	len += (size_t)snprintf(text, 16, "deep: ");
	memset(text + len, '[', depth);
	len += depth;
	memset(text + len, ']', depth);
	len += depth;
	text[len++] = '\n';
	text[len] = '\0';
	expect_errors(text, 1, &diag);
	assert_diag(&diag, "config.yaml:1: expected at most 32 levels of "
			   "nesting, got more\n");
	config_diag_release(&diag);

	/* The top mapping plus 31 lists is the deepest accepted. */
	snprintf(text, 2 * depth + 16, "deep: %.31s%.31s\n",
		 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
	expect_errors(text, 1, &diag);
	assert_diag(&diag, "config.yaml:1: deep: unknown key\n");
	config_diag_release(&diag);
	snprintf(text, 2 * depth + 16, "deep: %.32s%.32s\n",
		 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
	expect_errors(text, 1, &diag);
	assert_diag(&diag, "config.yaml:1: expected at most 32 levels");
	config_diag_release(&diag);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_file_loads),
		cmocka_unit_test(test_defaults_without_file),
		cmocka_unit_test(test_example_is_defaults),
		cmocka_unit_test(test_empty_and_comment_only_files),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_integer_ranges),
		cmocka_unit_test(test_max_lamport_jump),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_duration_in_file),
		cmocka_unit_test(test_journal_retention),
		cmocka_unit_test(test_journal_pin_max_below_retention),
		cmocka_unit_test(test_journal_retention_bad_values),
		cmocka_unit_test(test_log_level),
		cmocka_unit_test(test_strategy),
		cmocka_unit_test(test_invalid_node_ids),
		cmocka_unit_test(test_cluster_nodes_valid),
		cmocka_unit_test(test_cluster_nodes_invalid),
		cmocka_unit_test(test_duplicate_node_ids),
		cmocka_unit_test(test_node_missing_from_cluster),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_paths_and_other_values),
		cmocka_unit_test(test_watch_paths_must_be_volumes),
		cmocka_unit_test(test_watch_paths_default_follows_root),
		cmocka_unit_test(test_recursive_false),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_yaml_syntax_error),
		cmocka_unit_test(test_top_level_not_mapping),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_file_too_large),
		cmocka_unit_test(test_multiple_documents),
		cmocka_unit_test(test_all_problems_reported),
		cmocka_unit_test(test_env_overrides_win),
		cmocka_unit_test(test_env_errors),
		cmocka_unit_test(test_env_node_missing_from_cluster),
		cmocka_unit_test(test_api_listen),
		cmocka_unit_test(test_api_read_token_and_hosts),
		cmocka_unit_test(test_nul_and_control_bytes),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_null_values_keep_defaults),
		cmocka_unit_test(test_peer_port_follows_p2p_port),
		cmocka_unit_test(test_diag_appends_and_may_be_null),
		cmocka_unit_test(test_many_problems_grow_diag),
		cmocka_unit_test(test_deep_nesting),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
