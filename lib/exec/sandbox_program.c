/* rz-sandbox: the sandbox helper as a program of its own (see
 * sandbox_helper.c, "the helper as a program of its own"), built from
 * sandbox_helper.c and outdir.c and embedded in the library
 * (embed_bin.py). It is exec'd only by the helper the runner forks. */
#include "exec/sandbox_helper.h"

/* The program embeds nothing: a helper it would fork goes on in-process. */
const unsigned char rz__sbx_program[1] = { 0 };
const size_t rz__sbx_program_len = 0;

int main(int argc, char **argv)
{
    return rz__sbx_helper_program(argc, argv);
}
