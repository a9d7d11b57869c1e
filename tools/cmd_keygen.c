/* cmd_keygen.c - `aptomo keygen NAME`: a CURVE key pair for aptomod's control and results sockets and their
 * clients (libzmq's zmq_curve_keypair). NAME.key holds the pair (mode 0600: the daemon and the clients refuse a
 * secret others can read), NAME.pub the public key alone, the line to add to a curve_clients list or to give a
 * client as --server-key. Existing files are never overwritten: a lost secret is replaced by a new pair. */
#include <stdio.h>
#include <string.h>

#include "aptomo/curve.h"
#include "cli.h"

static const char HELP[] =
    "usage: aptomo keygen NAME\n"
    "Writes a new CURVE key pair (Z85, libzmq's zmq_curve_keypair) as NAME.key (public and secret key, mode\n"
    "0600) and NAME.pub (the public key alone), and prints the public key. Refuses to overwrite either file.\n"
    "  Daemon:  control.curve_secret_key / results.curve_secret_key: NAME.key (its own pair)\n"
    "           control.curve_clients / results.curve_clients: a file or directory holding the clients' .pub\n"
    "  Clients: aptomo watch --curve-key CLIENT.key --server-key DAEMON.pub\n"
    "See OPERATIONS.md \"Access\".\n";

int cmd_keygen(int argc, char **argv)
{
    cli_parser p;
    cli_init(&p, "keygen", HELP, NULL, NULL, argc, argv);
    int c;
    while ((c = cli_next(&p)) > 0)
        ;
    int cli_rc = cli_done(&p, c, 1, 1, "NAME");
    if (cli_rc != CLI_GO)
        return cli_rc;
    const char *base = p.args[0];
    if (!base[0] || base[strlen(base) - 1] == '/')
        return cli_fail(&p, "NAME '%s' must name a file (NAME.key and NAME.pub are written)", base);
    apt_error err = {0};
    apt_curve_pair kp;
    int rc = apt_curve_generate(&kp, &err);
    if (!rc)
        rc = apt_curve_write_pair(base, &kp, &err);
    memset(kp.sec, 0, sizeof kp.sec);
    if (rc) {
        return cli_report(rc, &err, CLI_RUN);
    }
    printf("%s\n", kp.pub);
    fprintf(stderr, "aptomo keygen: wrote %s.key (mode 0600, keep it secret) and %s.pub\n", base, base);
    return CLI_OK;
}
