/* Print the stages of a flow: a minimal program on the installed library.
 * Build: cc plan.c $(pkg-config --cflags --libs rhizos) -o plan */
#include <stdio.h>

#include <rhizos/rhizos.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FLOW\n", argv[0]);
        return 2;
    }
    rz_diags *diags = NULL;
    rz_flow *flow = NULL;
    rz_plan *plan = NULL;
    char *text = NULL;
    int rc = rz_diags_new(&diags);
    if (rc == RZ_OK)
        rc = rz_flow_load(&flow, argv[1], RZ_FORMAT_AUTO, diags);
    if (rc == RZ_OK)
        rc = rz_flow_validate(flow, NULL, diags);
    if (rc == RZ_OK)
        rc = rz_plan_build(&plan, flow, diags);
    if (rc == RZ_OK) {
        for (size_t s = 0; s < rz_plan_stage_count(plan); s++) {
            printf("stage %zu:", s + 1);
            for (size_t i = 0; i < rz_plan_stage_size(plan, s); i++)
                printf(" %s", rz_flow_step_id(flow, rz_plan_stage_step(plan, s, i)));
            printf("\n");
        }
    } else if (rz_diags_to_text(diags, &text) == RZ_OK && *text) {
        fputs(text, stderr);
    } else {
        fprintf(stderr, "%s: %s\n", rz_status_name(rc), rz_error_last()->message);
    }
    rz_free(text);
    rz_plan_free(plan);
    rz_flow_free(flow);
    rz_diags_free(diags);
    return rc == RZ_OK ? 0 : 1;
}
