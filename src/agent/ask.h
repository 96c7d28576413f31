/*
 * The loop's side of GET /v1/versions: questions the API queued
 * (API_CMD_ASK) go to the peers through replicate_ask_kept, and their
 * answers back to the API, which wakes the waiting request.
 */
#ifndef KRAKEN_AGENT_ASK_H
#define KRAKEN_AGENT_ASK_H

struct api;
struct replicate;

/* Takes every waiting question and has it asked; R NULL: there is no
 * one to ask, which is said as such.  Loop thread. */
void agent_asks_serve(struct api *api, struct replicate *r);

#endif
