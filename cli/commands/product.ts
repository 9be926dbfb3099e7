/** The product whose sessions `agent run` and `agent cp` open unless --product says otherwise. */
export const CLI_PRODUCT = "cli";
