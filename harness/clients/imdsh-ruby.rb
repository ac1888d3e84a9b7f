#!/usr/bin/ruby
# The `ruby` client: aws-sdk-core's default chain (Aws::CredentialProviderChain, which
# ends with Aws::InstanceProfileCredentials), then Aws::STS::Client#get_caller_identity.
# The STS endpoint is the first argument: aws-sdk-core 3.168 reads no endpoint variable.
require 'aws-sdk-core'
require 'json'

if ARGV.length != 1
  warn 'usage: imdsh-ruby STS_ENDPOINT'
  exit 2
end
begin
  out = Aws::STS::Client.new(endpoint: ARGV[0]).get_caller_identity
  puts JSON.generate('Arn' => out.arn, 'UserId' => out.user_id, 'Account' => out.account)
rescue Aws::Errors::ServiceError, Aws::Errors::MissingCredentialsError,
       Aws::Sigv4::Errors::MissingCredentialsError => e
  # What an uncaught exception's first line says, without the script's backtrace.
  warn "#{e.message} (#{e.class})"
  exit 1
end
