/* A main() for the fuzz target without libFuzzer (any compiler; linked with libbuddyslab.a).
 *
 *   fuzz_replay FILE|DIR...            run each input file (a directory: every file in it)
 *   fuzz_replay --make-seeds DIR       write the seed corpus (deterministic) into DIR
 *   fuzz_replay --seeds                run the seed corpus without writing it
 *   fuzz_replay --random SECONDS [N]   run the seeds, then random and mutated inputs for SECONDS
 *                                      (random stream N, default 1): a fuzzer without coverage
 *
 * Prints how many inputs and operations ran. A failed check aborts (see fuzz_alloc.c): the input that
 * failed is named (a file, a seed, or "random input #k" of a stream) and written to
 * ./fuzz_replay-failure.bin, which `fuzz_replay FILE` (or the libFuzzer binary) replays. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long inputs_run;
static unsigned long long bytes_run;

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* What is running, for the report when a check aborts. */
static char current[4200];

static const uint8_t *current_data;
static size_t current_size;

static void on_abort(int sig)
{
    static const char file[] = "fuzz_replay-failure.bin";
    (void)!write(2, "fuzz_replay: failed on ", 23);
    (void)!write(2, current, strlen(current));
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0 && current_data) {
        (void)!write(fd, current_data, current_size);
        close(fd);
        (void)!write(2, "; the input is in ./", 20);
        (void)!write(2, file, sizeof(file) - 1);
        (void)!write(2, " (replay: fuzz_replay FILE)", 27);
    }
    (void)!write(2, "\n", 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void run(const uint8_t *d, size_t n)
{
    current_data = d;
    current_size = n;
    LLVMFuzzerTestOneInput(d, n);
    inputs_run++;
    bytes_run += n;
}

/* ---- seeds: one per operation family with every size range, then mixes ---- */
#define NSEEDS 24
#define SEED_MAX 2500

static size_t make_seed(int k, uint8_t *out)
{
    size_t n = 0;
    rng_state = 0x9E3779B97F4A7C15ULL * (uint64_t)(k + 1) | 1;
    if (k < 16) {
        /* opcode family k: 100 operations on rotating slots, sizes from every range, with frees
         * (opcode 7), checks (13) and ownership (15) mixed in */
        for (int i = 0; i < 100 && n + 5 <= SEED_MAX; i++) {
            uint8_t op = (uint8_t)k;
            if (i % 5 == 4)
                op = 7;
            if (i % 17 == 16)
                op = 13;
            if (i % 23 == 22)
                op = 15;
            out[n++] = op;
            out[n++] = (uint8_t)(i * 7 % 64);
            static const uint8_t sel[] = {1, 60, 130, 150, 180, 190, 210, 230, 240, 247, 250, 0};
            out[n++] = sel[i % sizeof(sel)];
            out[n++] = (uint8_t)rnd();
            out[n++] = (uint8_t)rnd();
        }
    } else {
        /* random mixes of growing length */
        size_t len = 40 + (size_t)(k - 16) * 300;
        for (; n < len && n < SEED_MAX; n++)
            out[n] = (uint8_t)rnd();
    }
    return n;
}

static int make_seeds(const char *dir)
{
    mkdir(dir, 0777);
    static uint8_t buf[SEED_MAX];
    for (int k = 0; k < NSEEDS; k++) {
        size_t n = make_seed(k, buf);
        char path[4096];
        snprintf(path, sizeof(path), "%s/seed-%02d", dir, k);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
            fprintf(stderr, "fuzz_replay: cannot write %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    printf("fuzz_replay: %d seeds written to %s\n", NSEEDS, dir);
    return 0;
}

static void run_seeds(void)
{
    static uint8_t buf[SEED_MAX];
    for (int k = 0; k < NSEEDS; k++) {
        size_t n = make_seed(k, buf);
        snprintf(current, sizeof(current), "seed %d (%zu bytes)", k, n);
        run(buf, n);
    }
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_replay: %s: %s\n", path, strerror(errno));
        return 1;
    }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    snprintf(current, sizeof(current), "%s (%zu bytes)", path, n);
    run(buf, n);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz_replay: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path);
    DIR *d = opendir(path);
    if (!d)
        return 1;
    char **names = NULL;
    size_t nn = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(*names));
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        names[nn] = malloc(len);
        snprintf(names[nn], len, "%s/%s", path, e->d_name);
        nn++;
    }
    closedir(d);
    qsort(names, nn, sizeof(*names), cmp);
    int rc = 0;
    for (size_t i = 0; i < nn; i++) {
        rc |= run_file(names[i]);
        free(names[i]);
    }
    free(names);
    return rc;
}

static void run_random(double seconds, uint64_t stream)
{
    static uint8_t seed[SEED_MAX], buf[4096];
    double t0 = now();
    unsigned long k = 0;
    while (now() - t0 < seconds) {
        rng_state = (stream * 0x100000001B3ULL + k) * 0x9E3779B97F4A7C15ULL | 1;
        size_t n;
        if (k & 1) { /* a random input */
            n = 5 + rnd() % 1500;
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)rnd();
        } else { /* a mutated seed: flipped bytes, a duplicated stretch */
            uint64_t r = rnd();
            size_t m = make_seed((int)(r % NSEEDS), seed);
            rng_state ^= r;
            n = m < sizeof(buf) ? m : sizeof(buf);
            memcpy(buf, seed, n);
            for (int j = 0, flips = 1 + (int)(rnd() % 16); j < flips && n; j++)
                buf[rnd() % n] = (uint8_t)rnd();
            if (n > 10 && n < sizeof(buf) / 2) {
                size_t a = rnd() % n, len = 1 + rnd() % (n - a);
                memcpy(buf + n, buf + a, len);
                n += len;
            }
        }
        snprintf(current, sizeof(current), "random input #%lu of stream %llu (%zu bytes; rerun: --random SECONDS %llu)",
                 k, (unsigned long long)stream, n, (unsigned long long)stream);
        run(buf, n);
        k++;
    }
}

int main(int argc, char **argv)
{
    int rc = 0;
    double t0 = now();
    signal(SIGABRT, on_abort);
    if (argc == 3 && !strcmp(argv[1], "--make-seeds"))
        return make_seeds(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "--seeds")) {
        run_seeds();
    } else if (argc >= 3 && !strcmp(argv[1], "--random")) {
        run_seeds();
        run_random(atof(argv[2]), argc > 3 ? strtoull(argv[3], NULL, 10) : 1);
    } else if (argc >= 2 && argv[1][0] != '-') {
        for (int i = 1; i < argc; i++)
            rc |= run_path(argv[i]);
    } else {
        fprintf(stderr, "usage: fuzz_replay FILE|DIR... | --make-seeds DIR | --seeds | --random SECONDS [STREAM]\n");
        return 2;
    }
    printf("fuzz_replay: %lu inputs, %llu bytes (about %llu operations) in %.1f s: %s\n", inputs_run, bytes_run,
           bytes_run / 5, now() - t0, rc ? "some files could not be read" : "no failure");
    return rc;
}
