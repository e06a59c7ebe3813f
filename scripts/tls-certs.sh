#!/usr/bin/env bash
# Generates a throw-away certificate authority and a server certificate for
# 127.0.0.1 / localhost, for testing xdb's TLS connections (and for trying
# TLS by hand against a local server).
#
#   scripts/tls-certs.sh DIR [NAME] [CLIENT_USER]
#
# Writes DIR/NAME-ca.pem (the CA certificate: give it as sslrootcert= / ssl-ca=),
# DIR/NAME-ca.key, DIR/NAME-server.pem and DIR/NAME-server.key (for the server:
# PostgreSQL's ssl_cert_file/ssl_key_file, MariaDB's --ssl-cert/--ssl-key).
# DIR/NAME-client.pem and DIR/NAME-client.key are a client certificate for
# CLIENT_USER (default xdb_cert_user; its CN is the login name PostgreSQL's
# `cert` authentication checks): give them as sslcert=/sslkey= (PostgreSQL)
# or ssl-cert=/ssl-key= (MySQL). NAME defaults to "xdb-test". The server key is readable only by its owner, as
# PostgreSQL demands; chown it to the user that runs the server. Valid 10 days.
set -euo pipefail

dir=${1:?usage: scripts/tls-certs.sh DIR [NAME]}
name=${2:-xdb-test}
client_user=${3:-xdb_cert_user}
command -v openssl >/dev/null || { echo "tls-certs: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"

# The CA: self-signed, marked as a CA so that verifiers accept it as a trust anchor.
openssl req -x509 -newkey rsa:2048 -nodes -days 10 -sha256 \
  -keyout "$name-ca.key" -out "$name-ca.pem" -subj "/CN=$name test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# The server: a leaf for 127.0.0.1 and localhost (subjectAltName is what verify-full checks).
openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$name-server.key" -out "$name-server.csr" \
  -subj "/CN=localhost" 2>/dev/null
cat > "$name-server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in "$name-server.csr" -CA "$name-ca.pem" -CAkey "$name-ca.key" -CAcreateserial \
  -days 10 -sha256 -extfile "$name-server.ext" -out "$name-server.pem" 2>/dev/null
rm -f "$name-server.csr" "$name-server.ext" "$name-ca.srl"

# A client: CN is the database login it authenticates as.
openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$name-client.key" -out "$name-client.csr" \
  -subj "/CN=$client_user" 2>/dev/null
cat > "$name-client.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
openssl x509 -req -in "$name-client.csr" -CA "$name-ca.pem" -CAkey "$name-ca.key" -CAcreateserial \
  -days 10 -sha256 -extfile "$name-client.ext" -out "$name-client.pem" 2>/dev/null
rm -f "$name-client.csr" "$name-client.ext" "$name-ca.srl"
chmod 600 "$name-server.key" "$name-ca.key" "$name-client.key"
chmod 644 "$name-ca.pem" "$name-server.pem" "$name-client.pem"
echo "$dir/$name-ca.pem"
