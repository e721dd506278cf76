# Read by the Makefile (`terraform -chdir=deploy/terraform output -raw NAME`).
output "cluster_name" {
  description = "GKE cluster name."
  value       = google_container_cluster.this.name
}

output "location" {
  description = "Zone of the cluster (gcloud container clusters get-credentials --location)."
  value       = google_container_cluster.this.location
}

output "registry" {
  description = "Image prefix: <registry>/flexrl-train:<tag>."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "workspace_bucket" {
  description = "GCS bucket for archived workspaces (gs://<bucket>)."
  value       = google_storage_bucket.workspace.name
}

output "gpu_node_selector" {
  description = "flexrl k8s --gpu-node-selector value for the GPU pool."
  value       = "cloud.google.com/gke-accelerator=${var.gpu_type}"
}

output "gpus_per_node" {
  description = "GPUs per GPU node: the --gpus (tensor-parallel size) of one serving pod."
  value       = var.gpus_per_node
}
