/* cmd_dump.c — 'contra dump'. */
#include "cli.h"

int cmd_dump(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(ct_errorf("'dump' is not built yet"));
}
