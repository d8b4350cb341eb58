/* contra.c — the command-line driver: a thin dispatcher over the
 * frontend, passes, codegen and runtime layers. Each subcommand lives in
 * its own tools/cmd_*.c file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"dump", cmd_dump, "print a model's graph (text, json, dot, svg) and statistics"},
    {"convert", cmd_convert, "read a model (ONNX or ONNX text) and write it as ONNX or ONNX text"},
    {"compile", cmd_compile, "compile a model into generated C and a shared library or trainer"},
    {"run", cmd_run, "compile (cached) and run a model on .npy inputs"},
    {"eval", cmd_eval, "evaluate an encoder: kNN or linear classification on labelled images"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: contra COMMAND [options]\n\n"
               "contra compiles ONNX image encoders and contrastive losses into C.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'contra COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("contra %s\n", CT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "contra: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
