# GKE for flex-rl: a zonal cluster with an autoscaled CPU pool and a GPU pool that scales to zero, a GCS
# bucket for archived workspaces, an Artifact Registry repository for the images, Workload Identity.

module "sizing" {
  source        = "./modules/sizing"
  project_id    = var.project_id
  name          = var.name
  gpu_type      = var.gpu_type
  gpus_per_node = var.gpus_per_node
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  names       = module.sizing.names
  wi_pool     = "${var.project_id}.svc.id.goog"
  pod_account = "principal://iam.googleapis.com/projects/${data.google_project.this.number}/locations/global/workloadIdentityPools/${local.wi_pool}/subject/ns/${var.namespace}/sa/${var.service_account}"
}

check "gpu_shape" {
  assert {
    condition     = module.sizing.gpu_machine_type != null
    error_message = "no machine carries ${var.gpus_per_node} x ${var.gpu_type}; see modules/sizing for the shapes."
  }
}

# ----------------------------------------------------------------------------------------- identity
resource "google_service_account" "nodes" {
  account_id   = local.names.node_sa
  display_name = "GKE nodes of ${var.name}"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset(["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/artifactregistry.reader"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.nodes.email}"
}

# ----------------------------------------------------------------------------------------- cluster
resource "google_container_cluster" "this" {
  name                        = local.names.cluster
  location                    = var.zone
  remove_default_node_pool    = true
  initial_node_count          = 1
  deletion_protection         = var.deletion_protection
  networking_mode             = "VPC_NATIVE"
  resource_labels             = { app = "flexrl" }
  enable_intranode_visibility = true
  ip_allocation_policy {}
  release_channel {
    channel = "REGULAR"
  }
  workload_identity_config {
    workload_pool = local.wi_pool
  }
  addons_config {
    # The shared workspace volume (ReadWriteMany, POSIX renames): storage class standard-rwx.
    gcp_filestore_csi_driver_config {
      enabled = true
    }
  }
  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }
  network_policy {
    enabled = true
  }
  node_config {
    service_account = google_service_account.nodes.email
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

resource "google_container_node_pool" "cpu" {
  name     = local.names.cpu_pool
  cluster  = google_container_cluster.this.id
  location = var.zone
  autoscaling {
    min_node_count = 1
    max_node_count = var.cpu_max_nodes
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  node_config {
    machine_type    = var.cpu_machine_type
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = { "flexrl/pool" = "cpu" }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

resource "google_container_node_pool" "gpu" {
  name     = local.names.gpu_pool
  cluster  = google_container_cluster.this.id
  location = var.zone
  autoscaling {
    min_node_count = 0
    max_node_count = var.gpu_max_nodes
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  node_config {
    machine_type    = module.sizing.gpu_machine_type
    spot            = var.spot
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = { "flexrl/pool" = "gpu" }
    guest_accelerator {
      type  = var.gpu_type
      count = var.gpus_per_node
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }
    # Only pods that tolerate this (GPU pods: flexrl k8s adds it) land on the expensive nodes.
    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

# ----------------------------------------------------------------------------------------- storage
resource "google_storage_bucket" "workspace" {
  name                        = local.names.bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
}

# The pods' Kubernetes ServiceAccount reads and writes the bucket (Workload Identity, no key files).
resource "google_storage_bucket_iam_member" "pods" {
  bucket = google_storage_bucket.workspace.name
  role   = "roles/storage.objectUser"
  member = local.pod_account
}

resource "google_artifact_registry_repository" "images" {
  repository_id = local.names.repository
  location      = var.region
  format        = "DOCKER"
  description   = "flex-rl images: flexrl-train, flexrl-serve, flexrl-gpu"
}
