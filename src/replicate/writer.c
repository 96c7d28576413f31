/*
 * Two singly linked queues under one mutex: queued (caller -> thread) and
 * done (thread -> caller), each kept with head and tail so jobs stay in
 * order.  The thread waits on a condition for queued work; an eventfd
 * tells the caller's loop that done jobs wait, written only when the
 * done queue was empty: writer_collect reads the eventfd before it takes
 * the whole queue, so a job pushed behind others is collected with them
 * (a write per job woke the loop once per chunk, ~27,000 times a GiB).  held counts the chunk
 * bytes of every job not yet collected, so the bound covers jobs waiting
 * in either queue.  outstanding is only touched by the caller's thread.
 */
#include "writer.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

struct job_queue {
	struct writer_job *head, *tail;
};

struct writer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job_queue queued, done;
	size_t held, max_bytes;
	size_t outstanding;
	int efd;
	bool quit, started;
};

static void queue_push(struct job_queue *q, struct writer_job *job)
{
	job->next = NULL;
	if (q->tail)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
}

static void queue_free(struct job_queue *q)
{
	while (q->head) {
		struct writer_job *job = q->head;

		q->head = job->next;
		writer_job_free(job);
	}
	q->tail = NULL;
}

static bool writer_verify(const struct writer_job *job)
{
	uint8_t got[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	return EVP_Digest(job->data, job->len, got, &n, EVP_sha256(),
			  NULL) == 1 &&
	       n == CONTENT_HASH_LEN && memcmp(got, job->hash, n) == 0;
}

/* A check job: every chunk it names, read back, matches its hash. */
static void writer_check(struct writer_job *job)
{
	uint64_t base = job->targets[0].offset;
	ssize_t n = pread(job->targets[0].fd, job->data, job->len,
			  (off_t)base);

	if (n < 0) {
		job->result = -errno;
		return;
	}
	for (size_t i = 0; i < job->n_check && !job->result; i++) {
		const struct content_chunk *k = &job->check[i];
		uint8_t got[EVP_MAX_MD_SIZE];
		unsigned len = 0;

		if (k->offset < base || k->offset - base + k->len > (size_t)n ||
		    EVP_Digest(job->data + (k->offset - base), k->len, got,
			       &len, EVP_sha256(), NULL) != 1 ||
		    len != CONTENT_HASH_LEN ||
		    memcmp(got, k->hash, CONTENT_HASH_LEN) != 0)
			job->result = KR_ECORRUPT;
	}
}

int writer_set_meta(int fd, uint32_t mode, uint32_t uid, uint32_t gid,
		    int64_t mtime_ns)
{
	struct timespec times[2] = {
		{ .tv_nsec = UTIME_OMIT },
		{ .tv_sec = mtime_ns / 1000000000,
		  .tv_nsec = mtime_ns % 1000000000 },
	};

	if (fchown(fd, uid, gid) != 0 && errno != EPERM)
		return -errno;
	if (fchmod(fd, mode & 07777) != 0)
		return -errno;
	/* A directory's mtime moves with every entry made in it. */
	if (!S_ISDIR(mode) && futimens(fd, times) != 0)
		return -errno;
	return 0;
}

static void writer_create_end(struct writer_job *job)
{
	struct writer_target *t = &job->targets[0];

	if (!job->result)
		job->result = writer_set_meta(t->fd, job->create.mode,
					      job->create.uid,
					      job->create.gid,
					      job->create.mtime_ns);
	if (job->result && t->fd >= 0) {
		close(t->fd);
		unlinkat(job->create.dirfd, job->create.name, 0);
		t->fd = -1;
	}
}

void writer_run(struct writer_job *job)
{
	bool create = job->create.dirfd >= 0;

	job->result = 0;
	if (job->check_only) {
		writer_check(job);
		return;
	}
	if (!job->verified && !writer_verify(job)) {
		job->result = KR_ECORRUPT;
		return;
	}
	if (create) {
		job->targets[0].fd = openat(job->create.dirfd,
					    job->create.name,
					    O_RDWR | O_CREAT | O_EXCL |
					    O_CLOEXEC, 0600);
		if (job->targets[0].fd < 0) {
			job->result = -errno;
			return;
		}
	}
	for (size_t i = 0; i < job->n_targets && !job->result; i++) {
		const struct writer_target *t = &job->targets[i];
		ssize_t n = pwrite(t->fd, job->data, job->len,
				   (off_t)t->offset);

		if (n < 0)
			job->result = -errno;
		else if ((size_t)n != job->len)
			job->result = -ENOSPC;   /* a short write: disk full */
	}
	if (create)
		writer_create_end(job);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct writer_job *job;
		bool first;

		while (!w->queued.head && !w->quit)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->quit)
			break;
		job = w->queued.head;
		w->queued.head = job->next;
		if (!w->queued.head)
			w->queued.tail = NULL;
		pthread_mutex_unlock(&w->lock);
		writer_run(job);
		pthread_mutex_lock(&w->lock);
		first = !w->done.head;
		queue_push(&w->done, job);
		if (!first)
			continue;
		pthread_mutex_unlock(&w->lock);
		while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int writer_new(size_t max_bytes, struct writer **out)
{
	struct writer *w = calloc(1, sizeof(*w));
	int err = 0;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->max_bytes = max_bytes;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (w->efd < 0)
		err = -errno;
	if (!err)
		err = -pthread_create(&w->thread, NULL, writer_main, w);
	w->started = !err;
	if (err) {
		writer_free(w);
		return err;
	}
	*out = w;
	return 0;
}

void writer_free(struct writer *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->quit = true;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	queue_free(&w->queued);
	queue_free(&w->done);
	if (w->efd >= 0)
		close(w->efd);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

int writer_fd(const struct writer *w)
{
	return w->efd;
}

int writer_submit(struct writer *w, struct writer_job *job)
{
	int err = 0;

	if (!job->data || !job->n_targets ||
	    job->n_targets > WRITER_TARGETS_MAX ||
	    (job->create.dirfd >= 0 && job->n_targets != 1))
		return -EINVAL;
	pthread_mutex_lock(&w->lock);
	if (w->held + job->len > w->max_bytes) {
		err = -EAGAIN;
	} else {
		w->held += job->len;
		queue_push(&w->queued, job);
		pthread_cond_signal(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	if (!err)
		w->outstanding++;
	return err;
}

struct writer_job *writer_collect(struct writer *w)
{
	struct writer_job *jobs;
	uint64_t n;

	while (read(w->efd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&w->lock);
	jobs = w->done.head;
	w->done.head = w->done.tail = NULL;
	for (struct writer_job *j = jobs; j; j = j->next) {
		w->held -= j->len;
		w->outstanding--;
	}
	pthread_mutex_unlock(&w->lock);
	return jobs;
}

size_t writer_outstanding(const struct writer *w)
{
	return w->outstanding;
}

struct writer_job *writer_job_new(void)
{
	struct writer_job *job = calloc(1, sizeof(*job));

	if (job)
		job->create.dirfd = -1;
	return job;
}

void writer_job_free(struct writer_job *job)
{
	if (!job)
		return;
	/* A temp file made but never taken over by its transfer (the agent
	 * stopping before it collected the job) goes with the job. */
	if (job->create.dirfd >= 0 && job->targets[0].fd >= 0) {
		close(job->targets[0].fd);
		unlinkat(job->create.dirfd, job->create.name, 0);
	}
	free(job->data);
	free(job);
}
