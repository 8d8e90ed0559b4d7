"""What the API and the CLI show of our records and take as input, one module per context: camelCase on the
wire (the API) and snake_case in Python (the CLI's JSON)."""
