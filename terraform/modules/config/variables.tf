variable "config_yaml" {
  description = "Content of warden.yaml (the file the Python code validates)."
  type        = string
  nullable    = false

  validation {
    condition     = can(yamldecode(var.config_yaml).models)
    error_message = "The config must be YAML with a top-level 'models' mapping."
  }
}
