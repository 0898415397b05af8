# warden.yaml is the one source of truth: the same file ships in every bundle and is read here.
module "config" {
  source      = "./modules/config"
  config_yaml = file("${path.module}/${var.config_file}")
}
