//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Palisade: package a trained model and serve it as a secure API.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Palisade home: bundles, keys and logs [env: PALISADE_HOME] [default: ~/.palisade]
    #[arg(long, global = true, value_name = "PATH")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a model directory (palisade.yaml + model file) and store it as a versioned,
    /// content-addressed bundle.
    Build(BuildArgs),
    /// Serve every model in the store over the Open Inference Protocol (REST) and Seldon v1.
    Serve(Box<ServeArgs>),
    /// Run a model once, in this process, on a V2 inference request read from a file, and
    /// print the V2 response (a model directory is prepared and self-tested as `build` does,
    /// and not stored).
    Predict(PredictArgs),
    /// List, inspect or delete stored models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Manage service accounts (system callers of the built-in issuer).
    Sa {
        #[command(subcommand)]
        command: SaCommand,
    },
    /// Manage the built-in issuer's signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Issue tokens from the built-in issuer, for local development and testing.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage who may call models (owner self-service, through a running server).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The built-in certificate authority for workload identities (mutual TLS).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issue workload certificates from the built-in CA.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Check model manifests, the platform configuration and policy files without serving:
    /// each error names the file, line and field.
    Validate(ValidateArgs),
    /// Read and verify the tamper-evident audit trail (works while the server runs).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Kubernetes: the ModelDeployment CRD, and the objects a ModelDeployment becomes.
    K8s {
        #[command(subcommand)]
        command: crate::k8s::K8sCommand,
    },
    /// The Kubernetes operator: reconciles ModelDeployments into running, secured models.
    Operator(crate::k8s::OperatorArgs),
    /// Container images of stored models (OCI, built without a daemon).
    Image {
        #[command(subcommand)]
        command: crate::image::ImageCommand,
    },
}

/// `palisade validate`
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The files (a `palisade.yaml`, a `--config` file, policy files); a directory holding
    /// `palisade.yaml` stands for its manifest.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// What the files are (default: told apart by their content: `apiVersion` is a policy
    /// resource, a top-level `model` a manifest, anything else the platform configuration).
    #[arg(long, value_enum)]
    pub kind: Option<FileKind>,
}

/// What `palisade validate` reads a file as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileKind {
    /// A model's `palisade.yaml`.
    Manifest,
    /// The platform configuration (`serve --config`).
    Platform,
    /// Istio resources of a policy directory (`serve --policy-dir`).
    Policy,
}

/// `palisade audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the genesis checkpoint, the hash chain, the signed checkpoints and the records
    /// after the last one (of each replica, for a directory of replicas' trails); exits 0
    /// when intact, 65 naming the replica and the first problem otherwise.
    Verify(AuditVerifyArgs),
    /// Print records matching filters (JSON lines with --output json); from a directory of
    /// replicas' trails, merged by time.
    Query(AuditQueryArgs),
    /// Print the last records, and with -f new ones as they are written.
    Tail(AuditTailArgs),
    /// Rebuild replicas' trails from the lines they shipped on stdout (as a log collector
    /// stored them), so that `verify` and `query` can check and read that copy.
    Import(AuditImportArgs),
    /// Seal the rotated segments now (zstd frames, a frame index and a signed seal
    /// checkpoint; the chain is unchanged), as the server does in the background. Needs the
    /// signing key; safe beside a running server.
    Seal(AuditSealArgs),
    /// Copy the sealed segments and new checkpoints to the archive now (each object read
    /// back and compared), then apply retention, as the server does in the background.
    /// Safe beside a running server; resumes where an interrupted run stopped.
    Archive(AuditArchiveArgs),
}

/// Where the archive is (`--archive s3://BUCKET/PREFIX` and how to reach it).
#[derive(Debug, Args, Clone, Default)]
pub struct ArchiveFlags {
    /// The archive: s3://BUCKET/PREFIX. `verify` then checks the archived segments, their
    /// checkpoints and the local tail as one chain, per replica.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub archive: Option<String>,
    /// The S3 endpoint URL [default: AWS's, for the region].
    #[arg(long, value_name = "URL", requires = "archive")]
    pub archive_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub archive_region: String,
    /// An AWS shared-credentials file [default: the environment, AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY, as the AWS tools read it].
    #[arg(long, value_name = "FILE", requires = "archive")]
    pub archive_credentials: Option<PathBuf>,
    /// Allow an http:// endpoint (a trusted network only).
    #[arg(long, requires = "archive")]
    pub archive_allow_http: bool,
}

/// `palisade audit archive`
#[derive(Debug, Args)]
pub struct AuditArchiveArgs {
    /// The audit directory [default: HOME/audit].
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The platform configuration: its audit.archive and audit.retention are used.
    #[arg(long, value_name = "FILE", conflicts_with = "archive")]
    pub config: Option<PathBuf>,
    /// The archive, when not from --config.
    #[command(flatten)]
    pub target: ArchiveFlags,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `palisade audit seal`
#[derive(Debug, Args)]
pub struct AuditSealArgs {
    /// The audit directory [default: HOME/audit].
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The signing key [default: keys/audit-signing.pk8 beside the audit directory].
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Records per zstd frame.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub frame_records: u32,
    /// zstd level.
    #[arg(long, value_name = "LEVEL", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `palisade audit import`
#[derive(Debug, Args)]
pub struct AuditImportArgs {
    /// Files of shipped lines, one line as the replica wrote it per line, in the order they
    /// were written ("-" for standard input); other lines are ignored and counted.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Where to write the trails (OUT/REPLICA/trail); must not hold them yet.
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `palisade audit verify`
#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// Start at the segment holding this sequence number (older segments may be archived).
    #[arg(long, value_name = "SEQ")]
    pub from: Option<u64>,
    /// The log's public key, to pin it: a file (a copy of audit-signing.pub taken when the
    /// log was set up) or its base64 text [default: keys/audit-signing.pub beside the audit
    /// directory, HOME/keys/audit-signing.pub; never a file inside the log directory]. For
    /// a directory of replicas' trails: REPLICA=FILE|BASE64 (repeat it), or a directory of
    /// pinned keys named REPLICA.pub [default: each replica's keys/ beside its trail].
    #[arg(long, value_name = "FILE|BASE64|REPLICA=KEY|KEYDIR")]
    pub public_key: Vec<String>,
    /// The audit directory [default: HOME/audit].
    #[arg(long = "dir", value_name = "DIR", conflicts_with = "trail")]
    pub dir: Option<PathBuf>,
    /// The audit directory, or a directory of replicas' trails (REPLICA/, REPLICA/trail/
    /// or REPLICA/audit/ in each subdirectory) [default: HOME/audit].
    #[arg(value_name = "DIR")]
    pub trail: Option<PathBuf>,
    /// With --archive: the archived part of each trail too.
    #[command(flatten)]
    pub archive: ArchiveFlags,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `palisade audit query`
#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    /// Records at or after this time (RFC 3339, e.g. 2026-11-26T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Records before this time.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Request principal (iss/sub), email, client id, service account or mTLS peer.
    #[arg(long)]
    pub principal: Option<String>,
    /// Model as NAME, NAMESPACE/NAME or NAMESPACE/NAME:VERSION.
    #[arg(long)]
    pub model: Option<String>,
    /// allow, deny or skipped.
    #[arg(long)]
    pub decision: Option<String>,
    /// An HTTP status (403) or class (4xx).
    #[arg(long)]
    pub status: Option<String>,
    /// The request id a client received in x-request-id.
    #[arg(long)]
    pub request_id: Option<String>,
    /// At most this many records (the earliest, across replicas).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The audit directory [default: HOME/audit].
    #[arg(long = "dir", value_name = "DIR", conflicts_with = "trail")]
    pub dir: Option<PathBuf>,
    /// The audit directory, or a directory of replicas' trails, whose records are merged
    /// by time [default: HOME/audit].
    #[arg(value_name = "DIR")]
    pub trail: Option<PathBuf>,
    /// With --archive: the archived segments too (only those whose index may hold records
    /// between --from and --to are fetched), each replica's followed by its local tail.
    #[command(flatten)]
    pub archive: ArchiveFlags,
    /// Output format (json: one record per line, for SIEMs).
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Append the records as JSON lines to FILE (for SIEM shipping) instead of printing.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

/// `palisade audit tail`
#[derive(Debug, Args)]
pub struct AuditTailArgs {
    /// Keep printing records as they are written.
    #[arg(long, short)]
    pub follow: bool,
    /// How many existing records to print first.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub lines: usize,
    /// The audit directory [default: HOME/audit].
    #[arg(long = "dir", value_name = "DIR", conflicts_with = "trail")]
    pub dir: Option<PathBuf>,
    /// The audit directory (one trail) [default: HOME/audit].
    #[arg(value_name = "DIR")]
    pub trail: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Append the records as JSON lines to FILE (for SIEM shipping) instead of printing.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

/// `palisade ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA in the home directory: a new root, or an organisation's intermediate.
    Init(CaInitArgs),
}

/// `palisade ca init`
#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// The SPIFFE trust domain of issued identities.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Lifetime of a new root, such as 87600h (ten years, the default).
    #[arg(long, value_name = "DURATION")]
    pub lifetime: Option<String>,
    /// Adopt this intermediate certificate (PEM chain) instead of creating a root.
    #[arg(long, value_name = "FILE", requires_all = ["intermediate_key", "roots"])]
    pub intermediate_cert: Option<PathBuf>,
    /// The intermediate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub intermediate_key: Option<PathBuf>,
    /// The organisation's root certificate(s) (PEM), which workloads will trust.
    #[arg(long, value_name = "FILE")]
    pub roots: Option<PathBuf>,
}

/// `palisade cert ...`
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a short-lived workload certificate with a SPIFFE identity.
    Issue(CertIssueArgs),
}

/// `palisade cert issue`
#[derive(Debug, Args)]
pub struct CertIssueArgs {
    /// The workload's namespace.
    #[arg(long)]
    pub namespace: String,
    /// The workload's service account.
    #[arg(long)]
    pub service_account: String,
    /// Where to write cert.pem, key.pem and ca.pem.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Extra DNS names or IP addresses (so the certificate can serve too); repeatable.
    #[arg(long = "dns", value_name = "NAME")]
    pub dns_names: Vec<String>,
    /// Lifetime, such as 24h (the default).
    #[arg(long, value_name = "DURATION")]
    pub lifetime: Option<String>,
}

/// How the CLI reaches a running server's management API.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's base URL. Default: the server last started with this home (its
    /// `server.json`), else http://127.0.0.1:8080.
    #[arg(long, env = "PALISADE_SERVER")]
    pub server: Option<String>,
    /// A PEM certificate to trust for the server's TLS (default: the one the server last
    /// started with this home recorded, such as its self-signed certificate).
    #[arg(long, env = "PALISADE_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Your bearer token (from your identity provider, or `palisade token issue`).
    #[arg(long, env = "PALISADE_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

/// `palisade policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or replace policies from a YAML file (Istio AuthorizationPolicy, multi-document).
    Apply(PolicyApplyArgs),
    /// List the policies you may manage.
    List(PolicyListArgs),
    /// Delete an owner-managed policy.
    Delete(PolicyDeleteArgs),
    /// Explain who can call a model, and through which rule.
    Explain(PolicyExplainArgs),
    /// Dry-run the policies for a token or a claim set: prints the decision and the deciding
    /// rule. Exits 0 when allowed, 1 when denied.
    Check(PolicyCheckArgs),
}

/// `palisade policy apply`
#[derive(Debug, Args)]
pub struct PolicyApplyArgs {
    /// The policy file.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Print who would gain and lose access, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply even when an owner would lose access to their own model.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `palisade policy list`
#[derive(Debug, Args)]
pub struct PolicyListArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `palisade policy delete`
#[derive(Debug, Args)]
pub struct PolicyDeleteArgs {
    /// NAMESPACE/NAME of the policy.
    #[arg(value_name = "NAMESPACE/NAME")]
    pub policy: String,
    /// Print who would gain and lose access, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete even when an owner would lose access to their own model.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `palisade policy explain`
#[derive(Debug, Args)]
pub struct PolicyExplainArgs {
    /// The model's name.
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `palisade policy check`
#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The model's name.
    #[arg(long, value_name = "MODEL")]
    pub model: String,
    /// A token to check (verified by the server like a real request).
    #[arg(long, value_name = "JWT", conflicts_with = "claims", required_unless_present = "claims")]
    pub token: Option<String>,
    /// A claim set to check, as JSON (taken as is: no signature).
    #[arg(long, value_name = "JSON")]
    pub claims: Option<String>,
    /// The request path [default: the model's infer path].
    #[arg(long)]
    pub path: Option<String>,
    /// The HTTP method [default: POST].
    #[arg(long)]
    pub method: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Options shared by commands that read the platform configuration.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Platform configuration file (authentication, issuer, authorization); see docs/config.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `palisade sa ...`
#[derive(Debug, Subcommand)]
pub enum SaCommand {
    /// Create a service account; prints its client id and secret once.
    Create(SaCreateArgs),
    /// List service accounts.
    List(SaListArgs),
    /// Revoke a service account: it gets no new tokens.
    Revoke(SaRevokeArgs),
}

/// `palisade sa create`
#[derive(Debug, Args)]
pub struct SaCreateArgs {
    /// The service account's name (a DNS label).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Its namespace.
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `palisade sa list`
#[derive(Debug, Args)]
pub struct SaListArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `palisade sa revoke`
#[derive(Debug, Args)]
pub struct SaRevokeArgs {
    /// The service account's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Its namespace.
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `palisade keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start signing with a new key; the old one stays published for the overlap
    /// (`issuer.keyRotationOverlap`, default 24 h).
    Rotate(KeysRotateArgs),
    /// Remove a key from the published key set at once (a compromised key): tokens it
    /// signed stop verifying within a second on running servers. Revoking the signing key
    /// starts a new one.
    Revoke(KeysRevokeArgs),
}

/// `palisade keys revoke KID`
#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    /// The key id (`kid`), as listed in `/.well-known/jwks.json`.
    pub kid: String,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `palisade keys rotate`
#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `palisade token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed token from the built-in issuer (anyone with the home directory can).
    Issue(TokenIssueArgs),
}

/// `palisade token issue`
#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    /// A service account, as NAMESPACE/NAME: the token is what `/oauth/token` would give it.
    #[arg(long, value_name = "NS/NAME", conflicts_with = "subject")]
    pub service_account: Option<String>,
    /// The subject (`sub`) of a developer token [default: the email, so that each person has their
    /// own request principal; else the current user].
    #[arg(long)]
    pub subject: Option<String>,
    /// An `email` claim (marked verified), to call models you own.
    #[arg(long)]
    pub email: Option<String>,
    /// A group for the groups claim; repeatable.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// The audience (default: the issuer's audiences).
    #[arg(long)]
    pub audience: Option<String>,
    /// Lifetime, such as 15m or 1h [default: the issuer's token lifetime].
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `palisade build`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Directory holding palisade.yaml and the model file.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `palisade predict`
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model directory (palisade.yaml and the model file), or a stored NAME[:VERSION].
    #[arg(value_name = "DIR|MODEL")]
    pub model: String,
    /// The V2 inference request (the body of POST /v2/models/NAME/infer, JSON); `-` reads
    /// standard input.
    #[arg(long, short, value_name = "FILE")]
    pub input: String,
}

/// `palisade serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Directory of Istio security resources (RequestAuthentication, AuthorizationPolicy,
    /// PeerAuthentication, multi-document YAML); reloaded when it changes.
    #[arg(long, value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM) for --listen; reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --listen.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a self-signed certificate for localhost (generated once in the home).
    #[arg(long, conflicts_with_all = ["tls_cert", "dangerous_plaintext"])]
    pub tls: bool,
    /// Serve with Palisade's own workload certificate for NAMESPACE/SERVICE_ACCOUNT
    /// (SPIFFE id spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT), issued by the
    /// built-in CA (`palisade ca init`) and renewed at half its lifetime without dropping
    /// connections. The same certificate is Palisade's client identity towards upstream
    /// servers.
    #[arg(long, value_name = "NS/SA", conflicts_with_all = ["tls_cert", "tls", "dangerous_plaintext"])]
    pub workload_identity: Option<String>,
    /// Serve as the router in front of a ModelDeployment's variants: FILE lists each
    /// variant's URL and traffic share (and the shadow), as `palisade k8s render` writes it.
    /// The home's one model becomes a traffic split over the variants, each called with the
    /// caller's token over mutual TLS (docs/kubernetes.md, "The traffic split").
    #[arg(long, value_name = "FILE")]
    pub traffic: Option<PathBuf>,
    /// Lifetime of each workload certificate, such as 24h (the default), 1h or 10s; it is
    /// renewed when half of it has passed.
    #[arg(long, value_name = "DURATION", requires = "workload_identity")]
    pub workload_cert_ttl: Option<String>,
    /// A DNS name or IP address clients dial, added to the workload certificate besides
    /// localhost, 127.0.0.1, ::1 and the --listen address; repeatable.
    #[arg(long = "workload-dns", value_name = "NAME", requires = "workload_identity")]
    pub workload_dns: Vec<String>,
    /// Trust anchors (PEM) for client certificates (mutual TLS) [default: the built-in CA].
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Trust domain accepted in client certificates with --client-ca.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Palisade's client certificate (PEM chain) for upstream model servers that ask for
    /// mutual TLS, such as one cert-manager or SPIRE writes; reloaded when the file changes
    /// [default: the --workload-identity certificate].
    #[arg(long, value_name = "FILE", requires = "workload_key", conflicts_with = "workload_identity")]
    pub workload_cert: Option<PathBuf>,
    /// The private key (PEM) of --workload-cert.
    #[arg(long, value_name = "FILE", requires = "workload_cert")]
    pub workload_key: Option<PathBuf>,
    /// Allow plaintext HTTP on a non-loopback address. Anyone on the network can read and
    /// change the traffic, tokens included.
    #[arg(long)]
    pub dangerous_plaintext: bool,
    /// Serve without authentication, authorization and audit, to measure what security
    /// costs. Loopback addresses only; anyone who can connect may call every model.
    #[arg(long)]
    pub dangerous_disable_security: bool,
    /// Address for the model APIs; port 0 picks a free port (printed at start).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address for the admin port (Prometheus /metrics, /readyz, /livez); off when absent.
    /// Loopback only, unless --dangerous-plaintext-admin.
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin_listen: Option<SocketAddr>,
    /// Allow --admin-listen on a non-loopback address, in plaintext: anyone on the network
    /// can read /metrics, which names models and policies.
    #[arg(long, requires = "admin_listen")]
    pub dangerous_plaintext_admin: bool,
    /// Inference threads [default: number of CPUs].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Inference jobs that may wait before requests are refused with 429.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub queue_capacity: usize,
    /// Largest request body in bytes; larger requests get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Request body bytes held in memory at once, over all requests; past it, requests are
    /// refused with 503 (gRPC RESOURCE_EXHAUSTED) without their bodies being held [default: a
    /// quarter of the memory limit of the server's cgroup, else of the machine's memory].
    #[arg(long, value_name = "BYTES")]
    pub max_inflight_bytes: Option<usize>,
    /// Seconds a new connection has for its TLS handshake and first complete request head,
    /// together; silent and trickling connections are closed then.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a connection may stay with no request in flight (HTTP/2: GOAWAY first).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Connections at once [default: what the descriptor limit leaves after a reserve for
    /// models, the audit log and upstream calls]; past it, unused connections are shed,
    /// then new ones refused.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections at once from one client address; 0 turns the limit off (behind an L4
    /// load balancer that hides client addresses, every client shares one).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// How long one inference may take, in seconds, before 504.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub inference_timeout: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Export traces (one span per request, continuing the caller's `traceparent`) to this
    /// OpenTelemetry collector, over OTLP/HTTP protobuf (`URL/v1/traces`).
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// `palisade models ...`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List stored model versions.
    List(ListArgs),
    /// Show a model version: digest, inputs and outputs, owners (verifies the bundle).
    Show(ShowArgs),
    /// Delete a model version (NAME:VERSION or NAME:latest).
    Delete(DeleteArgs),
    /// The model versions the running server serves now (those you own or may call).
    Served(ServedArgs),
}

/// `palisade models served`
#[derive(Debug, Args)]
pub struct ServedArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `palisade models list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `palisade models show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// NAME, NAME:VERSION or NAME:latest.
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `palisade models delete`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// NAME:VERSION or NAME:latest.
    #[arg(value_name = "MODEL")]
    pub model: String,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// JSON, for scripts.
    Json,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }
}
