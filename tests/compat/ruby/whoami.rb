# frozen_string_literal: true

# The Ruby aws-sdk-core client of the sidecred compatibility tests.
#
# It relies on the default credential chain, exactly as an application in a
# patched pod would, calls sts:GetCallerIdentity and prints the caller's ARN.
# aws-sdk-core before 3.188 ignores AWS_ENDPOINT_URL_STS, so the test passes the
# STS emulator's address as the first argument.
#
#   ruby whoami.rb --version
#   ruby whoami.rb [ENDPOINT_URL]

require 'aws-sdk-core'

if ARGV.first == '--version'
  puts Aws::CORE_GEM_VERSION
  exit 0
end

options = {}
options[:endpoint] = ARGV.first if ARGV.first
begin
  puts Aws::STS::Client.new(**options).get_caller_identity.arn
rescue Aws::Errors::ServiceError, Aws::Errors::MissingCredentialsError,
       Aws::Sigv4::Errors::MissingCredentialsError => e
  warn "GetCallerIdentity: #{e.class}: #{e.message}"
  exit 1
end
