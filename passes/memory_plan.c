/* placeholder: being written */
typedef int ct_placeholder_memory_plan;
