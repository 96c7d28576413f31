/*
 * libFuzzer target for how the Docker plugin reads a request: the body
 * (plugin_parse_body, as every endpoint with a body gets it) and the
 * fields the endpoints take from it (plugin_name, plugin_mount_id,
 * plugin_options).  The input is one request body.
 *
 * Checked beyond "no crash, no leak":
 *  - a body is either a JSON object or refused with an answer, never
 *    both and never neither;
 *  - every refusal is {"Err": string} and renders as JSON that reads
 *    back the same: an answer jansson cannot build or dump would reach
 *    dockerd as a 500 "out of memory" instead of the reason (echoed
 *    input is where that could go wrong);
 *  - what is accepted is what the endpoints rely on: a Name that
 *    path_volume_name_ok() takes, does not start with '.' and holds no
 *    NUL; an ID of 1..256 bytes without control characters; Opts absent,
 *    null, or an object of string node_id only.
 */
#include "fuzz.h"

#include "api_int.h"
#include "path.h"

#include <jansson.h>
#include <string.h>

#define FUZZ_ID_MAX 256

/* ANS is a refusal Docker can read; consumed. */
static void fuzz_refusal(json_t *ans)
{
	json_t *back;
	char *text;

	FUZZ_CHECK(ans != NULL);
	FUZZ_CHECK(json_is_object(ans) && json_object_size(ans) == 1);
	FUZZ_CHECK(json_is_string(json_object_get(ans, "Err")));
	text = json_dumps(ans, JSON_COMPACT);
	FUZZ_CHECK(text != NULL);
	back = json_loads(text, 0, NULL);
	FUZZ_CHECK(back != NULL && json_equal(back, ans));
	json_decref(back);
	free(text);
	json_decref(ans);
}

/* The string field KEY of REQ holds exactly S: no NUL cut it short. */
static bool fuzz_whole_field(json_t *req, const char *key, const char *s)
{
	json_t *v = json_object_get(req, key);

	return json_is_string(v) && json_string_value(v) == s &&
	       json_string_length(v) == strlen(s);
}

static void fuzz_name(json_t *req)
{
	const char *name = NULL;
	json_t *bad = plugin_name(req, &name);

	if (bad) {
		fuzz_refusal(bad);
		return;
	}
	FUZZ_CHECK(fuzz_whole_field(req, "Name", name));
	FUZZ_CHECK(name[0] != '.' && path_volume_name_ok(name));
}

static void fuzz_mount_id(json_t *req)
{
	const char *id = NULL;
	json_t *bad = plugin_mount_id(req, &id);

	if (bad) {
		fuzz_refusal(bad);
		return;
	}
	FUZZ_CHECK(fuzz_whole_field(req, "ID", id));
	FUZZ_CHECK(id[0] != '\0' && strlen(id) <= FUZZ_ID_MAX);
	for (const char *c = id; *c; c++)
		FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
}

static void fuzz_options(json_t *req)
{
	json_t *bad = plugin_options(req), *opts, *v;
	const char *key;

	if (bad) {
		fuzz_refusal(bad);
		return;
	}
	opts = json_object_get(req, "Opts");
	if (!opts || json_is_null(opts))
		return;
	FUZZ_CHECK(json_is_object(opts));
	json_object_foreach(opts, key, v)
		FUZZ_CHECK(strcmp(key, "node_id") == 0 && json_is_string(v));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *err = NULL;
	json_t *req = plugin_parse_body((const char *)data, size, &err);

	if (!req) {
		fuzz_refusal(err);
		return 0;
	}
	FUZZ_CHECK(err == NULL && json_is_object(req));
	fuzz_name(req);
	fuzz_mount_id(req);
	fuzz_options(req);
	json_decref(req);
	return 0;
}
