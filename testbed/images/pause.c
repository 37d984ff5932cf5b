/* pause: the sandbox (pod infra) process for the testbed's kubelet. It holds the pod's namespaces open by blocking
 * forever, exits cleanly on SIGINT/SIGTERM so pod teardown is quick, and reaps zombies when the pod shares its PID
 * namespace (it is PID 1 there). Built with gcc -static -Os so the image needs nothing but this binary. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts("pause (dindcheck testbed) 1.0");
        return 0;
    }
    if (getpid() != 1) fprintf(stderr, "pause: warning: not PID 1\n");
    struct sigaction term = {.sa_handler = on_term};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigemptyset(&term.sa_mask);
    sigemptyset(&child.sa_mask);
    if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
        sigaction(SIGCHLD, &child, NULL) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) pause();
}
