/* cli_common.c — helpers shared by the driver's subcommands. */
#include "cli.h"

int cli_fail(ct_status st)
{
    fprintf(stderr, "contra: %s\n", ct_status_msg(st));
    ct_status_free(st);
    return 1;
}
